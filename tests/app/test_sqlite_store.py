"""SQLite-only behaviour of the embedded store: WAL checkpoints run in the background, not in commits."""
from __future__ import annotations

import threading
import time

from app.store.base import CallRecord
from app.store.sqlite import SQLiteStore


def test_commits_never_checkpoint_and_the_background_thread_does(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    try:
        assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert any(t.name == "nuqi-sqlite-checkpoint" for t in threading.enumerate())
        state = {"last_seq": -1, "blob": "x" * 30_000}  # a call state's size: several pages per commit
        store.create_call(CallRecord(call_id="c1", tenant="t", agent_id=None, state=state))
        size_before = path.stat().st_size
        rec = store.get_call("c1", tenant="t")
        for seq in range(40):
            rec.state = {**state, "last_seq": seq}
            assert store.commit_chunk(rec, rec.version, seq, {"seq": seq})
        deadline = time.monotonic() + 5.0
        while path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > size_before  # the pages reached the database file: checkpointed
        assert store.get_call("c1", tenant="t").state["last_seq"] == 39
    finally:
        store.close()
    assert not store._checkpointer._thread.is_alive()  # close() stops it


OLD_SCHEMA = """
CREATE TABLE calls (call_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, agent_id TEXT, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL, summary TEXT,
    meta TEXT NOT NULL);
CREATE INDEX calls_tenant_status ON calls(tenant, status);
CREATE TABLE chunks (call_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (call_id, seq));
CREATE TABLE transcripts (call_id TEXT NOT NULL, key TEXT NOT NULL, start REAL, entry TEXT NOT NULL,
    PRIMARY KEY (call_id, key));
CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, tenant TEXT NOT NULL, agent_id TEXT,
    level INTEGER NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL, payload TEXT NOT NULL, acked_at REAL,
    acked_by TEXT, dedup_key TEXT NOT NULL UNIQUE);
CREATE TABLE detail_expiry (call_id TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX detail_expiry_at ON detail_expiry(expires_at);
INSERT INTO calls VALUES ('13800001111', 'acme', 'a1', 'active', 1, 2, 5, '{"last_seq": 1}', NULL, '{}');
INSERT INTO calls VALUES ('c2', 'globex', NULL, 'ended', 1, 2, 9, '{}', '{"peak_stage": 3}', '{}');
INSERT INTO chunks VALUES ('13800001111', 0, '{"seq": 0}'), ('13800001111', 1, '{"seq": 1}');
INSERT INTO transcripts VALUES ('c2', 'u2', 2.0, '{"text": "second"}'), ('c2', 'u1', NULL, '{"text": "first"}');
INSERT INTO alerts (call_id, tenant, agent_id, level, kind, created_at, payload, dedup_key)
    VALUES ('13800001111', 'acme', 'a1', 2, 'stage', 1, '{}', '13800001111:s2');
INSERT INTO detail_expiry VALUES ('c2', 9999999999);
"""


def test_a_file_written_before_tenants_is_migrated_when_opened(tmp_path):
    """17.9: calls are keyed by (tenant, call id) now; a file of the old layout is migrated in place, losing
    nothing, and the same id can then be used by another tenant."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    for _ in range(2):  # a second open (another worker) finds it migrated
        store = SQLiteStore(path)
        try:
            a = store.get_call("13800001111", tenant="acme")
            assert (a.version, a.agent_id, a.state) == (5, "a1", {"last_seq": 1})
            assert store.get_call("13800001111", tenant="globex") is None
            assert [e["seq"] for e in store.list_chunks("13800001111", tenant="acme")] == [0, 1]
            assert [t["text"] for t in store.list_transcripts("c2", tenant="globex")] == ["first", "second"]
            assert store.get_call("c2", tenant="globex").summary == {"peak_stage": 3}
            assert store.add_alert("13800001111", "acme", "a1", 2, "stage", {}, "13800001111:s2") is None  # kept
        finally:
            store.close()
    store = SQLiteStore(path)
    try:
        assert store.add_alert("13800001111", "globex", None, 2, "stage", {}, "13800001111:s2") is not None
        assert store.create_call(CallRecord(call_id="13800001111", tenant="globex"))
        assert store.get_call("13800001111", tenant="acme").version == 5
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert not [t for t in tables if t.endswith("_v1")]
    assert {"calls_tenant_status", "detail_expiry_at"} <= indexes
