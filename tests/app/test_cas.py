"""The one compare-and-set retry helper (app/services/cas.py) against a real SQLite store."""
from __future__ import annotations

import pytest

from app.services import cas
from app.store.base import CallRecord
from app.store.sqlite import SQLiteStore
from pipelines.errors import ConflictError


@pytest.fixture()
def store(tmp_path):
    s = SQLiteStore(tmp_path / "cas.db")
    s.create_call(CallRecord(call_id="c1", tenant="t", state={"n": 0}))
    yield s
    s.close()


def increment(store: SQLiteStore, stale: CallRecord | None = None):
    """One read-change-CAS attempt; ``stale`` (read before another writer committed) loses its first try."""
    tries = []

    def attempt() -> CallRecord | None:
        rec = stale if stale is not None and not tries else store.get_call("c1", tenant="t")
        tries.append(rec.version)
        rec.state = {"n": rec.state["n"] + 1}
        return rec if store.save_call(rec, rec.version) else None

    return attempt, tries


def test_a_lost_race_is_retried_on_fresh_state(store):
    stale = store.get_call("c1", tenant="t")
    winner = store.get_call("c1", tenant="t")
    winner.state = {"n": 10}
    assert store.save_call(winner, winner.version)  # another worker commits first
    attempt, tries = increment(store, stale)
    rec = cas.retry_cas(attempt, "incrementing c1", call_id="c1")
    assert tries == [0, 1] and rec.version == 2
    assert store.get_call("c1", tenant="t").state == {"n": 11}  # built on the winner's state, nothing lost


def test_every_operation_gives_up_after_the_same_bound(store, monkeypatch):
    monkeypatch.setattr(cas, "RETRY_SLEEP_S", 0.0)
    calls = []

    def always_loses() -> None:
        rec = store.get_call("c1", tenant="t")
        calls.append(1)
        assert not store.save_call(rec, rec.version - 1)  # a version that is never current
        return None

    with pytest.raises(ConflictError, match="updated too often") as err:
        cas.retry_cas(always_loses, "ending call 'c1'", call_id="c1")
    assert len(calls) == cas.MAX_LOST_RACES
    assert err.value.detail == {"call_id": "c1"} and "ending call 'c1'" in err.value.message
    guard = cas.CasRetry("chunk 3", call_id="c1", seq=3)
    for _ in range(cas.MAX_LOST_RACES - 1):
        guard.lose()
    with pytest.raises(ConflictError):
        guard.lose()
