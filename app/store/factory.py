"""``open_store(settings)``: the call store named by ``settings.store.url`` (``NUQI_STORE``)."""
from __future__ import annotations

from pathlib import Path

from app.settings import ServiceSettings
from app.store.base import Store
from app.store.redis import RedisStore, split_url
from app.store.sqlite import SQLiteStore


def open_store(settings: ServiceSettings) -> Store:
    """The embedded SQLite file (``sqlite``: ``state_dir/nuqi.db``, or ``sqlite:///path.db``) or Redis
    (``redis://…``, ``rediss://…``, ``unix://…``) with the store group's ``redis_*`` options."""
    url = settings.store.url
    if url == "sqlite" or url.startswith("sqlite:"):
        path = settings.state_dir / "nuqi.db" if url in ("sqlite", "sqlite:") else Path(url.split("sqlite:///", 1)[-1])
        return SQLiteStore(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        prefix = split_url(url)[1].get("prefix") or settings.store.redis_prefix  # the URL's ?prefix= wins
        return RedisStore(url, prefix=prefix,
                          connect_timeout_s=settings.store.redis_connect_timeout_s,
                          socket_timeout_s=settings.store.redis_socket_timeout_s,
                          max_connections=settings.store.redis_max_connections)
    raise ValueError(f"NUQI_STORE={url!r}: use 'sqlite', 'sqlite:///path.db' or 'redis://host:port/db'")
