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
        rec = store.get_call("c1")
        for seq in range(40):
            rec.state = {**state, "last_seq": seq}
            assert store.commit_chunk(rec, rec.version, seq, {"seq": seq})
        deadline = time.monotonic() + 5.0
        while path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > size_before  # the pages reached the database file: checkpointed
        assert store.get_call("c1").state["last_seq"] == 39
    finally:
        store.close()
    assert not store._checkpointer._thread.is_alive()  # close() stops it
