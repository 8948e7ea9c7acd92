"""Persistence of live call state, per-chunk timelines, transcripts and alerts.

``open_store(url)`` picks the backend from ``NUQI_STORE``: the embedded SQLite file
(default, one machine) or Redis (``redis://…``, many workers/hosts).
"""
from __future__ import annotations

from pathlib import Path

from app.store.base import AlertRecord, CallRecord, Store


def open_store(url: str, state_dir: Path) -> Store:
    if url == "sqlite" or url.startswith("sqlite:"):
        from app.store.sqlite import SQLiteStore

        path = state_dir / "nuqi.db" if url in ("sqlite", "sqlite:") else Path(url.split("sqlite:///", 1)[-1])
        return SQLiteStore(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.store.redis import RedisStore

        return RedisStore(url)
    raise ValueError(f"NUQI_STORE={url!r}: use 'sqlite', 'sqlite:///path.db' or 'redis://host:port/db'")


__all__ = ["AlertRecord", "CallRecord", "Store", "open_store"]
