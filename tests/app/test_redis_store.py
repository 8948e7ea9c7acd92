"""Store contract: RedisStore behaves like SQLiteStore (the reference), checked on both backends.

Needs a Redis at NUQI_TEST_REDIS (default redis://127.0.0.1:6379/15); each test uses its own key prefix.
"""
from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.store.base import CallRecord, Store
from app.store.sqlite import SQLiteStore
from pipelines.errors import StoreUnavailableError

REDIS_URL = os.environ.get("NUQI_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _redis_up() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


REDIS_UP = _redis_up()
needs_redis = pytest.mark.skipif(not REDIS_UP, reason=f"no Redis at {REDIS_URL}")


def _redis_store() -> Store:
    from app.store.redis import RedisStore

    return RedisStore(REDIS_URL, prefix=f"t-{uuid.uuid4().hex[:10]}")


def _drop(store: Store) -> None:
    from app.store.redis import RedisStore

    if isinstance(store, RedisStore):
        keys = list(store.client.scan_iter(f"{store.prefix}:*", count=1000))
        if keys:
            store.client.delete(*keys)
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis)])
def store(request, tmp_path):
    s = SQLiteStore(tmp_path / "s.db") if request.param == "sqlite" else _redis_store()
    yield s
    _drop(s)


@pytest.fixture()
def pair(tmp_path):
    if not REDIS_UP:
        pytest.skip(f"no Redis at {REDIS_URL}")
    a, b = SQLiteStore(tmp_path / "ref.db"), _redis_store()
    yield a, b
    _drop(a)
    _drop(b)


def rec(call_id: str, tenant: str = "t1", agent: str | None = "a1", **state) -> CallRecord:
    return CallRecord(call_id=call_id, tenant=tenant, agent_id=agent, state={"last_seq": -1, **state})


# --------------------------------------------------------------------------- calls
def test_create_get_and_cas(store):
    assert store.get_call("c1", tenant="t1") is None
    assert store.create_call(rec("c1", meta_x=1)) is True
    assert store.create_call(rec("c1")) is False  # insert-if-absent
    r = store.get_call("c1", tenant="t1")
    assert (r.tenant, r.agent_id, r.status, r.version, r.state["meta_x"]) == ("t1", "a1", "active", 0, 1)
    stale = store.get_call("c1", tenant="t1")
    r.state["last_seq"] = 0
    assert store.save_call(r, 0) is True and r.version == 1
    stale.state["last_seq"] = 99
    assert store.save_call(stale, 0) is False  # lost the race: nothing written
    assert store.get_call("c1", tenant="t1").state["last_seq"] == 0
    assert store.get_call("c1", tenant="t1").version == 1


def test_commit_chunk_is_atomic_with_state(store):
    store.create_call(rec("c1"))
    r = store.get_call("c1", tenant="t1")
    r.state["last_seq"] = 0
    assert store.commit_chunk(r, 0, 0, {"seq": 0, "x": "零"}) is True
    stale = store.get_call("c1", tenant="t1")
    stale.version = 0
    assert store.commit_chunk(stale, 0, 1, {"seq": 1}) is False
    assert store.get_chunk("c1", 1, tenant="t1") is None  # the failed CAS wrote no timeline entry
    assert store.get_chunk("c1", 0, tenant="t1") == {"seq": 0, "x": "零"}
    r2 = store.get_call("c1", tenant="t1")
    for seq in (1, 2, 10, 3):
        assert store.commit_chunk(r2, r2.version, seq, {"seq": seq})
    assert [e["seq"] for e in store.list_chunks("c1", tenant="t1")] == [0, 1, 2, 3, 10]  # numeric, not lexical order
    assert store.list_chunks("nope", tenant="t1") == []


def test_concurrent_cas_has_exactly_one_winner_per_version(store):
    store.create_call(rec("c1", n=0))
    wins = []

    def worker(i: int) -> None:
        for _ in range(30):
            while True:
                r = store.get_call("c1", tenant="t1")
                r.state["n"] += 1
                if store.commit_chunk(r, r.version, r.state["n"], {"by": i}):
                    wins.append(r.version)
                    break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get_call("c1", tenant="t1")
    assert final.state["n"] == 120 and final.version == 120  # no lost update
    assert sorted(wins) == list(range(1, 121))
    assert len(store.list_chunks("c1", tenant="t1")) == 120


def test_list_calls_filters_and_orders(store):
    for i, (tenant, status) in enumerate([("t1", "active"), ("t1", "ended"), ("t2", "active"), ("t1", "active")]):
        store.create_call(rec(f"c{i}", tenant=tenant))
        r = store.get_call(f"c{i}", tenant=tenant)
        r.status = status
        time.sleep(0.002)
        assert store.save_call(r, r.version)
    ids = lambda rs: [r.call_id for r in rs]  # noqa: E731
    assert ids(store.list_calls()) == ["c3", "c2", "c1", "c0"]  # most recently updated first
    assert ids(store.list_calls(tenant="t1")) == ["c3", "c1", "c0"]
    assert ids(store.list_calls(tenant="t1", status="active")) == ["c3", "c0"]
    assert ids(store.list_calls(status="ended")) == ["c1"]
    assert ids(store.list_calls(limit=2)) == ["c3", "c2"]
    # ending a call moves it between status indexes
    r = store.get_call("c0", tenant="t1")
    r.status = "ended"
    store.save_call(r, r.version)
    assert ids(store.list_calls(tenant="t1", status="active")) == ["c3"]
    assert ids(store.list_calls(tenant="t1", status="ended")) == ["c0", "c1"]


# --------------------------------------------------------------------------- transcripts
def test_transcripts_replace_and_order(store):
    store.put_transcript("c1", "u2", {"start": 5.0, "text": "second"}, tenant="t1")
    store.put_transcript("c1", "u1", {"start": 1.0, "text": "first, interim"}, tenant="t1")
    store.put_transcript("c1", "u0", {"start": None, "text": "no time"}, tenant="t1")
    store.put_transcript("c1", "u1", {"start": 1.0, "text": "first, final"}, tenant="t1")
    assert [e["text"] for e in store.list_transcripts("c1", tenant="t1")] == ["no time", "first, final", "second"]


def _end(store, cid, ttl_s, expected=None):
    r = store.get_call(cid, tenant="t1")
    r.status = "ended"
    return store.save_call(r, r.version if expected is None else expected, detail_ttl_s=ttl_s)


def test_ended_call_detail_expires_but_record_and_alerts_stay(store):
    for cid in ("old", "new"):
        store.create_call(rec(cid))
        r = store.get_call(cid, tenant="t1")
        assert store.commit_chunk(r, r.version, 0, {"seq": 0})
        store.put_transcript(cid, "u1", {"start": 1.0, "text": "好的"}, tenant="t1")
    store.add_alert("old", "t1", "a1", 2, "stage", {"why": "x"}, "old:1")
    assert _end(store, "old", 0.3)  # the end and its retention are one atomic write
    assert [e["seq"] for e in store.list_chunks("old", tenant="t1")] == [0]  # not before its time
    time.sleep(0.5)
    assert _end(store, "new", 3600)  # SQLite purges whatever is due whenever a call ends
    assert store.list_chunks("old", tenant="t1") == [] and store.list_transcripts("old", tenant="t1") == []
    assert store.get_call("old", tenant="t1").status == "ended"
    assert [a.call_id for a in store.list_alerts(call_id="old")] == ["old"]
    assert [e["seq"] for e in store.list_chunks("new", tenant="t1")] == [0]
    assert [e["text"] for e in store.list_transcripts("new", tenant="t1")] == ["好的"]


def test_lost_end_race_sets_no_expiry(store):
    store.create_call(rec("c1"))
    r = store.get_call("c1", tenant="t1")
    assert store.commit_chunk(r, r.version, 0, {"seq": 0})
    store.put_transcript("c1", "u1", {"start": 1.0, "text": "好的"}, tenant="t1")
    assert not _end(store, "c1", 0.2, expected=r.version - 1)  # stale version: nothing written
    time.sleep(0.4)
    store.create_call(rec("c2"))
    assert _end(store, "c2", 3600)  # would purge c1's detail had the failed CAS scheduled it
    assert store.get_call("c1", tenant="t1").status == "active"
    assert [e["seq"] for e in store.list_chunks("c1", tenant="t1")] == [0]
    assert [e["text"] for e in store.list_transcripts("c1", tenant="t1")] == ["好的"]


# --------------------------------------------------------------------------- alerts
def test_alert_ids_dedup_filters_and_ack(store):
    assert store.last_alert_id() == 0
    a1 = store.add_alert("c1", "t1", "a1", 2, "stage", {"why": "声音变大"}, "c1:k1")
    assert a1 is not None and a1.id >= 1 and a1.payload == {"why": "声音变大"}
    assert store.add_alert("c1", "t1", "a1", 2, "stage", {"why": "again"}, "c1:k1") is None  # dedup
    a2 = store.add_alert("c2", "t1", "a2", 1, "stage", {}, "c2:k1")
    a3 = store.add_alert("c3", "t2", "a1", 3, "keyword", {}, "c3:k1")
    assert a1.id < a2.id < a3.id and store.last_alert_id() == a3.id
    ids = lambda rs: [a.id for a in rs]  # noqa: E731
    assert ids(store.list_alerts()) == [a1.id, a2.id, a3.id]
    assert ids(store.list_alerts(tenant="t1")) == [a1.id, a2.id]
    assert ids(store.list_alerts(agent_id="a1")) == [a1.id, a3.id]
    assert ids(store.list_alerts(tenant="t1", agent_id="a1")) == [a1.id]
    assert ids(store.list_alerts(call_id="c2")) == [a2.id]
    assert ids(store.list_alerts(after=a1.id)) == [a2.id, a3.id]
    assert ids(store.list_alerts(limit=1)) == [a1.id]

    acked = store.ack_alert(a1.id, "a1")
    assert acked.acked_at is not None and acked.acked_by == "a1"
    again = store.ack_alert(a1.id, "someone-else")
    assert (again.acked_at, again.acked_by) == (acked.acked_at, "a1")  # first ack wins
    assert store.get_alert(a1.id).acked_at == acked.acked_at
    assert ids(store.list_alerts(tenant="t1", include_acked=False)) == [a2.id]
    assert ids(store.list_alerts(include_acked=False)) == [a2.id, a3.id]
    assert store.ack_alert(99999, "x") is None and store.get_alert(99999) is None
    d = store.get_alert(a2.id).to_dict()
    assert d["acked"] is False and d["call_id"] == "c2"


def test_concurrent_alerts_unique_ids_and_dedup(store):
    keys = [f"c1:k{i % 25}" for i in range(100)]
    random.Random(0).shuffle(keys)
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda k: store.add_alert("c1", "t1", "a1", 1, "stage", {}, k), keys))
    stored = [a for a in got if a is not None]
    assert len(stored) == 25  # exactly one per dedup key
    assert len({a.id for a in stored}) == 25
    listed = store.list_alerts(limit=500)
    assert [a.id for a in listed] == sorted(a.id for a in stored)


# --------------------------------------------------------------------------- differential
@pytest.mark.parametrize("seed", [7, 11, 23])
def test_random_operations_give_identical_results(pair, seed):
    """A random mix of every operation on both backends gives the same observable results."""
    ref, red = pair
    rng = random.Random(seed)
    calls = [f"c{i}" for i in range(4)]
    # ref id -> redis id: both are unique and increasing, but SQLite's AUTOINCREMENT also burns an id on
    # an ignored (deduplicated) insert, so the values themselves may differ
    alert_map: dict[int, int] = {0: 0}

    def norm_call(r):
        return None if r is None else (r.call_id, r.tenant, r.agent_id, r.status, r.version, r.state, r.summary, r.meta)

    def norm_alert(a, ids=None):
        return None if a is None else ((ids or {}).get(a.id, a.id), a.call_id, a.tenant, a.agent_id, a.level, a.kind,
                                       a.payload, a.acked_at is not None, a.acked_by)

    for step in range(400):
        op = rng.choice(["create", "save", "commit", "get", "list", "tr", "alert", "ack", "alerts", "chunks"])
        cid, tn = rng.choice(calls), rng.choice(["t1", "t2"])  # (a call is a tenant's: t1's c1 is not t2's)
        if op == "create":
            r = rec(cid, tenant=tn, agent=rng.choice(["a1", None]))
            assert ref.create_call(r) == red.create_call(r)
        elif op in ("save", "commit"):
            r1, r2 = ref.get_call(cid, tenant=tn), red.get_call(cid, tenant=tn)
            assert norm_call(r1) == norm_call(r2)
            if r1 is None:
                continue
            expected = r1.version - rng.choice([0, 0, 0, 1])
            mutate = {"x": rng.random(), "status": rng.choice(["active", "ended"])}
            for r in (r1, r2):
                r.state["x"] = mutate["x"]
                r.status = mutate["status"]
                r.summary = {"s": 1} if r.status == "ended" else None
            if op == "save":
                assert ref.save_call(r1, expected) == red.save_call(r2, expected)
            else:
                seq = rng.randrange(10)
                assert ref.commit_chunk(r1, expected, seq, {"seq": seq, "v": step}) == \
                    red.commit_chunk(r2, expected, seq, {"seq": seq, "v": step})
        elif op == "get":
            assert norm_call(ref.get_call(cid, tenant=tn)) == norm_call(red.get_call(cid, tenant=tn))
        elif op == "list":
            kw = {"tenant": rng.choice([None, "t1", "t2"]), "status": rng.choice([None, "active", "ended"])}
            # updated_at differs between backends by microseconds, so compare as sets
            assert sorted(map(str, map(norm_call, ref.list_calls(**kw)))) == \
                sorted(map(str, map(norm_call, red.list_calls(**kw))))
        elif op == "tr":
            key, start = rng.choice(["u1", "u2", "u3"]), rng.choice([None, 1.0, 2.0])
            entry = {"start": start, "text": f"t{step}"}
            ref.put_transcript(cid, key, entry, tenant=tn)
            red.put_transcript(cid, key, entry, tenant=tn)
            assert ref.list_transcripts(cid, tenant=tn) == red.list_transcripts(cid, tenant=tn)
        elif op == "alert":
            args = (cid, rng.choice(["t1", "t2"]), rng.choice(["a1", "a2", None]), rng.randrange(4), "stage",
                    {"n": step}, f"{cid}:{rng.randrange(12)}")
            a1, a2 = ref.add_alert(*args), red.add_alert(*args)
            if a1:
                assert a1.id > max(alert_map) and a2.id > max(alert_map.values())
                alert_map[a1.id] = a2.id
            assert norm_alert(a1, alert_map) == norm_alert(a2)
        elif op == "ack" and len(alert_map) > 1:
            aid = rng.choice(list(alert_map)[1:] + [10_000])
            by = rng.choice(["a1", None])
            assert (norm_alert(ref.ack_alert(aid, by), alert_map)
                    == norm_alert(red.ack_alert(alert_map.get(aid, aid), by)))
        elif op == "alerts":
            kw = {"tenant": rng.choice([None, "t1", "t2"]), "agent_id": rng.choice([None, "a1", "a2"]),
                  "call_id": rng.choice([None, cid]), "after": rng.randrange(8), "limit": rng.choice([1, 3, 100]),
                  "include_acked": rng.choice([True, False])}
            red_after = alert_map[max(i for i in alert_map if i <= kw["after"])]
            assert [norm_alert(a, alert_map) for a in ref.list_alerts(**kw)] == \
                [norm_alert(a) for a in red.list_alerts(**{**kw, "after": red_after})]
        elif op == "chunks":
            assert ref.list_chunks(cid, tenant=tn) == red.list_chunks(cid, tenant=tn)
            seq = rng.randrange(10)
            assert ref.get_chunk(cid, seq, tenant=tn) == red.get_chunk(cid, seq, tenant=tn)
    assert alert_map[ref.last_alert_id()] == red.last_alert_id()


# --------------------------------------------------------------------------- failure
def test_unreachable_redis_fails_fast_with_store_unavailable():
    from app.store.redis import RedisStore

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="x")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        store.get_call("c1", tenant="t1")
    assert time.monotonic() - t0 < 1.5
    assert f"127.0.0.1:{port}" not in err.value.message and "unavailable" in err.value.message  # host: log only
    with pytest.raises(StoreUnavailableError):
        store.ping()


def test_url_prefix_option_and_password_not_in_messages():
    from app.store.redis import RedisStore, split_url

    url, opts = split_url("redis://:s3cret@127.0.0.1:1/2?prefix=blue&socket_timeout=1")
    assert opts == {"prefix": "blue"} and "prefix" not in url and "socket_timeout=1" in url
    store = RedisStore("redis://:s3cret@127.0.0.1:1/2?prefix=blue")
    assert store.prefix == "blue" and "s3cret" not in store.safe_url
    with pytest.raises(StoreUnavailableError) as err:
        store.ping()
    assert "s3cret" not in err.value.message


# --------------------------------------------------------------------------- tenants (17.9)
PHONE = "13800001111"  # a phone number used as a call id


def test_a_call_id_is_the_tenants_own(store):
    """Two tenants using one call id get two calls: state, chunks, transcripts, alert dedup and expiry apart."""
    assert store.create_call(rec(PHONE, tenant="acme", agent="a1"))
    assert store.create_call(rec(PHONE, tenant="globex", agent="g7"))  # not "exists": its own call
    a, g = store.get_call(PHONE, tenant="acme"), store.get_call(PHONE, tenant="globex")
    assert (a.tenant, a.agent_id, g.tenant, g.agent_id) == ("acme", "a1", "globex", "g7")
    assert store.get_call(PHONE, tenant="initech") is None
    assert store.commit_chunk(a, a.version, 0, {"seq": 0, "who": "acme"})
    assert store.get_chunk(PHONE, 0, tenant="globex") is None and store.list_chunks(PHONE, tenant="globex") == []
    store.put_transcript(PHONE, "u1", {"start": 1.0, "text": "acme"}, tenant="acme")
    store.put_transcript(PHONE, "u1", {"start": 1.0, "text": "globex"}, tenant="globex")
    assert [t["text"] for t in store.list_transcripts(PHONE, tenant="acme")] == ["acme"]
    assert store.add_alert(PHONE, "acme", "a1", 3, "keyword", {}, f"{PHONE}:k1") is not None
    assert store.add_alert(PHONE, "globex", "g7", 3, "keyword", {}, f"{PHONE}:k1") is not None  # dedup per tenant
    assert store.add_alert(PHONE, "globex", "g7", 3, "keyword", {}, f"{PHONE}:k1") is None
    assert [x.tenant for x in store.list_alerts(tenant="acme", call_id=PHONE)] == ["acme"]
    g = store.get_call(PHONE, tenant="globex")
    g.status = "ended"
    assert store.save_call(g, g.version, detail_ttl_s=0.05)  # globex's call ends and its detail expires ...
    time.sleep(0.1)
    store.create_call(rec("other", tenant="acme"))
    o = store.get_call("other", tenant="acme")
    o.status = "ended"
    store.save_call(o, o.version, detail_ttl_s=3600)  # (SQLite purges what is due when a call ends)
    assert store.list_transcripts(PHONE, tenant="globex") == []
    assert [t["text"] for t in store.list_transcripts(PHONE, tenant="acme")] == ["acme"]  # ... acme's stays
    assert store.get_call(PHONE, tenant="acme").status == "active"
    assert sorted(c.tenant for c in store.list_calls() if c.call_id == PHONE) == ["acme", "globex"]


@needs_redis
def test_redis_key_names_never_hold_the_call_id():
    store = _redis_store()
    try:
        store.create_call(rec(PHONE, tenant="acme"))
        r = store.get_call(PHONE, tenant="acme")
        store.commit_chunk(r, r.version, 0, {"seq": 0})
        store.put_transcript(PHONE, "u1", {"start": 1.0}, tenant="acme")
        store.add_alert(PHONE, "acme", None, 2, "stage", {}, f"{PHONE}:s2")
        names = list(store.client.scan_iter(f"{store.prefix}:*"))
        assert len(names) > 5 and not [n for n in names if PHONE in n]
        members = [m for n in names if store.client.type(n) == "zset" for m in store.client.zrange(n, 0, -1)]
        assert members and not [m for m in members if PHONE in m]
    finally:
        _drop(store)


@needs_redis
def test_redis_written_before_tenants_is_migrated_on_open():
    """A Redis with the old layout (keys named by the raw call id, dedup keys without tenant), as the previous
    version wrote it, is moved to the new layout by the first worker that opens it; nothing is lost, TTLs kept."""
    import json

    import redis as redis_lib

    from app.store.redis import RedisStore

    prefix = f"mig-{uuid.uuid4().hex[:8]}"
    r = redis_lib.Redis.from_url(REDIS_URL, decode_responses=True)
    p = prefix
    for cid, tenant, status in ((PHONE, "acme", "active"), ("ended-1", "globex", "ended")):
        rec_json = {"tenant": tenant, "agent_id": "a1", "status": status, "created_at": 1.0, "updated_at": 2.0,
                    "state": {"last_seq": 0}, "summary": None, "meta": {"q": "vip"}}
        r.hset(f"{p}:call:{cid}", mapping={"v": 3, "rec": json.dumps(rec_json), "tenant": tenant, "status": status})
        for idx in ("all", f"t:{tenant}", f"s:{status}", f"ts:{tenant}:{status}"):
            r.zadd(f"{p}:calls:{idx}", {cid: 2.0})
        r.hset(f"{p}:chunks:{cid}", "0", json.dumps({"seq": 0}))
        r.hset(f"{p}:tr:{cid}", "u1", "1|" + json.dumps({"start": 1.0, "text": tenant}))
        r.set(f"{p}:trn:{cid}", 1)
    r.pexpire(f"{p}:chunks:ended-1", 600_000)
    r.set(f"{p}:alerts:seq", 1)
    r.hset(f"{p}:alert:1", mapping={"rec": json.dumps({"call_id": PHONE, "tenant": "acme", "agent_id": "a1",
                                                       "level": 2, "kind": "stage", "created_at": 1.0,
                                                       "payload": {}}), "tenant": "acme"})
    r.hset(f"{p}:alerts:dedup", f"{PHONE}:s2", 1)
    for idx in ("all", "t:acme", f"c:{PHONE}", "a:a1", "u", "u:acme"):
        r.zadd(f"{p}:alerts:{idx}", {"1": 1})
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        a = store.get_call(PHONE, tenant="acme")
        assert (a.call_id, a.tenant, a.version, a.meta, a.state) == (PHONE, "acme", 3, {"q": "vip"}, {"last_seq": 0})
        assert store.get_call(PHONE, tenant="globex") is None
        assert store.list_chunks(PHONE, tenant="acme") == [{"seq": 0}]
        assert [t["text"] for t in store.list_transcripts("ended-1", tenant="globex")] == ["globex"]
        assert 0 < store.client.pttl(store.k("chunks", store.ck("globex", "ended-1"))) <= 600_000  # TTL kept
        assert {c.call_id for c in store.list_calls(tenant="acme", status="active")} == {PHONE}
        assert [x.id for x in store.list_alerts(tenant="acme", call_id=PHONE)] == [1]
        assert store.add_alert(PHONE, "acme", "a1", 2, "stage", {}, f"{PHONE}:s2") is None  # its dedup key kept
        names = list(store.client.scan_iter(f"{prefix}:*"))
        assert not [n for n in names if PHONE in n] and store.client.get(store.k("meta", "schema")) == "2"
        assert store.migrate_v1() == 0  # once
        a.state = {"last_seq": 1}
        assert store.save_call(a, a.version)  # and the migrated call takes writes
    finally:
        _drop(store)
        r.close()
