"""Persistence of live call state, per-chunk timelines, transcripts and alerts.

``open_store(settings)`` (``app.store.factory``) picks the backend from ``NUQI_STORE``: the embedded
SQLite file (default, one machine) or Redis (``redis://…``, many workers/hosts).  The backends import
``app.store.base`` and ``app.store.codec`` only, never this package's namespace.
"""
from __future__ import annotations

from app.store.base import AlertRecord, CallRecord, Store
from app.store.factory import open_store

__all__ = ["AlertRecord", "CallRecord", "Store", "open_store"]
