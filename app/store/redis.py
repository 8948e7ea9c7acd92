"""Redis store: the same semantics as :class:`app.store.sqlite.SQLiteStore`, shared by many workers/hosts.

Layout (``{p}`` = key prefix, ``NUQI_REDIS_PREFIX``, default ``nuqi``; ``{c}`` = ``#`` + the call's
:func:`~app.store.base.call_key`, a digest of tenant and call id: calls are namespaced by tenant, and a call id,
which may be a phone number, never appears in a key name)::

    {p}:call:{c}               hash  v (version), rec (JSON, with the call id), tenant, status
    {p}:calls:all              zset  call keys {c} scored by updated_at  (+ :t:{tenant}, :s:{status},
                                                                          :ts:{tenant}:{status})
    {p}:chunks:{c}             hash  seq -> timeline entry (JSON)   (these and tr/trn expire
                                                                     NUQI_ENDED_CALL_DETAIL_TTL_S after the end)
    {p}:tr:{c} / {p}:trn:{c}   hash  key -> "n|entry JSON";  counter n (insertion order, like SQLite's rowid)
    {p}:alerts:seq             INCR counter: alert ids, monotonically increasing
    {p}:alert:{n}              hash  rec (JSON), tenant, acked_at / acked_by (JSON, absent until acked)
    {p}:alerts:dedup           hash  tenant/dedup_key -> alert id (uniqueness per tenant)
    {p}:alerts:all             zset  alert ids scored by id (+ :t:{tenant}, :a:{agent}, :c:{c},
                                                              unacked :u and :u:{tenant})
    {p}:meta:schema            "2" once the data is in this layout: a Redis written before calls were namespaced
                               (keys named by the raw call id) is migrated when a worker opens it (:func:`migrate_v1`)
    {p}:meta:epoch             string  a random id written once; when it is gone or another, Redis lost its data
                                       (restart without persistence, FLUSHDB): :meth:`RedisStore.check_intact`

Every write that must be atomic (compare-and-set of a call with its chunk entry, alert insert with
its dedup check, first-ack-wins) is one Lua script, so it is atomic without WATCH retries.  The
scripts build index key names from the prefix, so this store needs a single Redis (or a Sentinel
primary), not Redis Cluster.  Any Redis failure is raised as ``StoreUnavailableError`` (HTTP 503)
after at most one quick reconnect, so requests fail fast while Redis is down and recover by
themselves when it is back.  Run Redis with persistence (AOF) if alerts must survive its restart.
"""
from __future__ import annotations

import functools
import logging
import secrets
import time
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.store.base import AlertRecord, CallRecord, Store, call_key, dedup_scope
from app.store.codec import dumps, loads
from pipelines.errors import StoreUnavailableError

logger = logging.getLogger("nuqi.store.redis")
DEFAULT_PREFIX = "nuqi"  # the default of the setting redis_prefix
F = TypeVar("F", bound=Callable[..., Any])

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local p, id, t, s, score = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6]
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'rec', ARGV[7], 'tenant', t, 'status', s)
redis.call('ZADD', p..':calls:all', score, id)
redis.call('ZADD', p..':calls:t:'..t, score, id)
redis.call('ZADD', p..':calls:s:'..s, score, id)
redis.call('ZADD', p..':calls:ts:'..t..':'..s, score, id)
return 1
"""

# KEYS[1] call hash, KEYS[2] chunk hash, KEYS[3] / KEYS[4] transcript hash / counter;
# ARGV: prefix, id, expected, rec, tenant, status, updated_at, detail TTL ms (0: none) [, seq, entry]
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (not cur) or tonumber(cur) ~= tonumber(ARGV[3]) then return 0 end
local p, id, t, s, score = ARGV[1], ARGV[2], ARGV[5], ARGV[6], ARGV[7]
local ot = redis.call('HGET', KEYS[1], 'tenant')
local os = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[3]) + 1, 'rec', ARGV[4], 'tenant', t, 'status', s)
if ot ~= t then redis.call('ZREM', p..':calls:t:'..ot, id) end
if os ~= s then redis.call('ZREM', p..':calls:s:'..os, id) end
if ot ~= t or os ~= s then redis.call('ZREM', p..':calls:ts:'..ot..':'..os, id) end
redis.call('ZADD', p..':calls:all', score, id)
redis.call('ZADD', p..':calls:t:'..t, score, id)
redis.call('ZADD', p..':calls:s:'..s, score, id)
redis.call('ZADD', p..':calls:ts:'..t..':'..s, score, id)
if #ARGV >= 10 then redis.call('HSET', KEYS[2], ARGV[9], ARGV[10]) end
local ttl = tonumber(ARGV[8])
if ttl > 0 then
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS[1] transcript hash, KEYS[2] its insertion counter; ARGV: key, entry JSON
_PUT_TRANSCRIPT = """
local n = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], n..'|'..ARGV[2])
return n
"""

# ARGV: prefix, tenant-scoped dedup_key, call key {c}, tenant, agent_id ('' = none), rec JSON
_ADD_ALERT = """
local p = ARGV[1]
if redis.call('HEXISTS', p..':alerts:dedup', ARGV[2]) == 1 then return 0 end
local id = redis.call('INCR', p..':alerts:seq')
redis.call('HSET', p..':alerts:dedup', ARGV[2], id)
redis.call('HSET', p..':alert:'..id, 'rec', ARGV[6], 'tenant', ARGV[4])
redis.call('ZADD', p..':alerts:all', id, id)
redis.call('ZADD', p..':alerts:t:'..ARGV[4], id, id)
redis.call('ZADD', p..':alerts:c:'..ARGV[3], id, id)
if ARGV[5] ~= '' then redis.call('ZADD', p..':alerts:a:'..ARGV[5], id, id) end
redis.call('ZADD', p..':alerts:u', id, id)
redis.call('ZADD', p..':alerts:u:'..ARGV[4], id, id)
return id
"""

# ARGV: prefix, id, acked_at JSON, acked_by JSON.  First ack wins; returns the stored fields.
_ACK = """
local p, id = ARGV[1], ARGV[2]
local k = p..':alert:'..id
if redis.call('EXISTS', k) == 0 then return false end
if redis.call('HSETNX', k, 'acked_at', ARGV[3]) == 1 then
  redis.call('HSET', k, 'acked_by', ARGV[4])
  local t = redis.call('HGET', k, 'tenant')
  redis.call('ZREM', p..':alerts:u', id)
  redis.call('ZREM', p..':alerts:u:'..t, id)
end
return redis.call('HMGET', k, 'rec', 'acked_at', 'acked_by')
"""


def _guard(fn: F) -> F:
    """Turn every Redis failure into StoreUnavailableError (HTTP 503 with a clear message)."""

    @functools.wraps(fn)
    def wrapper(self: "RedisStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except redis.exceptions.RedisError as exc:
            # where Redis lives is for the operator's log, not for API clients (/readyz is public)
            logger.warning("Redis store at %s unavailable: %s: %s", self.safe_url, type(exc).__name__, exc)
            raise StoreUnavailableError(f"Redis store unavailable ({type(exc).__name__})") from exc

    return wrapper  # type: ignore[return-value]



def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Remove nuqi's own query options (``prefix``) from a Redis URL; return (url, options)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("prefix",)}
    rest = [(k, v) for k, v in query if k not in ours]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisStore(Store):
    name = "redis"

    def __init__(self, url: str, *, prefix: str | None = None, connect_timeout_s: float = 1.0,
                 socket_timeout_s: float = 2.0, max_connections: int = 64) -> None:
        """``prefix``: an explicit argument wins over the URL's ``?prefix=``, then ``DEFAULT_PREFIX``.  The
        service passes its settings (``redis_*``) in ``app.store.factory.open_store``."""
        url, opts = split_url(url)
        self.url = url
        parts = urlsplit(url)
        self.safe_url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                                                  if parts.hostname else parts.netloc, query=""))
        self.prefix = prefix or opts.get("prefix") or DEFAULT_PREFIX
        self.connect_timeout_s = connect_timeout_s
        self.socket_timeout_s = socket_timeout_s
        try:
            self.client = redis.Redis.from_url(
                url, decode_responses=True,
                socket_connect_timeout=self.connect_timeout_s, socket_timeout=self.socket_timeout_s,
                # one quick reconnect covers a pooled connection that died with a Redis restart;
                # beyond that, fail fast (503) instead of stalling the request
                retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
                max_connections=max_connections,
                health_check_interval=30, client_name="nuqi",
            )
        except ValueError as exc:
            raise StoreUnavailableError(f"bad Redis URL {self.safe_url}: {exc}") from exc
        self._create = self.client.register_script(_CREATE)
        self._cas_script = self.client.register_script(_CAS)
        self._put_tr = self.client.register_script(_PUT_TRANSCRIPT)
        self._add_alert = self.client.register_script(_ADD_ALERT)
        self._ack = self.client.register_script(_ACK)
        self._epoch: str | None = None  # the data epoch this process saw (see check_intact)
        try:
            self.check_intact()
            self.migrate_v1()
        except StoreUnavailableError:  # Redis may come up later: the first successful check records the epoch
            pass
        logger.info("Redis store at %s (prefix %s)", self.safe_url, self.prefix)

    def k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- lifecycle ---------------------------------------------------------------------------
    @_guard
    def ping(self) -> None:
        self.client.ping()

    @_guard
    def check_intact(self) -> bool:
        """False once when ``{p}:meta:epoch`` vanished or changed since this process last looked: Redis lost its
        data (restarted without persistence, flushed).  The first look (or a re-created epoch) records it."""
        key = self.k("meta", "epoch")
        current = self.client.get(key)
        if current is None:
            self.client.set(key, secrets.token_hex(8), nx=True)  # several workers: the first one's id wins
            current = self.client.get(key)
        seen, self._epoch = self._epoch, current
        return seen is None or seen == current

    @_guard
    def migrate_v1(self) -> int:
        """Move calls stored before calls were namespaced by tenant (keys named by the raw call id) to the current
        layout: each call's hash, chunks, transcripts and alert index renamed to its ``{c}`` name (TTLs kept), the
        call indexes' members replaced, alert dedup keys scoped by tenant; then ``{p}:meta:schema`` = 2.  Run by
        the first worker that opens the store (the others skip it while its lock is held).  Stop workers of the
        older version first: they would keep writing the old keys.  Returns the number of calls moved."""
        schema = self.k("meta", "schema")
        if self.client.get(schema) == "2":
            return 0
        lock = self.k("meta", "migrating")
        if not self.client.set(lock, "1", nx=True, ex=600):
            return 0
        moved = 0
        try:
            for old in self.client.zrange(self.k("calls", "all"), 0, -1):
                if not old.startswith("#"):
                    moved += self._migrate_call(old)
            dedup = self.k("alerts", "dedup")
            for field, alert_id in list(self.client.hscan_iter(dedup)):
                if "/" not in field:
                    tenant = self.client.hget(self.k("alert", alert_id), "tenant") or "default"
                    self.client.pipeline(transaction=True).hset(dedup, dedup_scope(tenant, field), alert_id) \
                        .hdel(dedup, field).execute()
            self.client.set(schema, "2")
        finally:
            self.client.delete(lock)
        if moved:
            logger.warning("Redis store %s: %d calls namespaced by tenant (migrated)", self.safe_url, moved)
        return moved

    def _migrate_call(self, old: str) -> int:
        h = self.client.hgetall(self.k("call", old))
        score = self.client.zscore(self.k("calls", "all"), old) or time.time()
        if not h:
            self.client.zrem(self.k("calls", "all"), old)
            return 0
        tenant, status = h["tenant"], h["status"]
        rec = loads(h["rec"])
        rec["call_id"] = old
        c = self.ck(tenant, old)
        present = [k for k in ("chunks", "tr", "trn") if self.client.exists(self.k(k, old))]
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.k("call", c), mapping={"v": h["v"], "rec": dumps(rec), "tenant": tenant, "status": status})
        for kind in present:
            pipe.rename(self.k(kind, old), self.k(kind, c))
        if self.client.exists(self.k("alerts", "c", old)):
            pipe.rename(self.k("alerts", "c", old), self.k("alerts", "c", c))
        for index in (("all",), ("t", tenant), ("s", status), ("ts", tenant, status)):
            pipe.zrem(self.k("calls", *index), old)
            pipe.zadd(self.k("calls", *index), {c: score})
        pipe.delete(self.k("call", old))
        pipe.execute()
        return 1

    def close(self) -> None:
        try:
            self.client.close()
        except redis.exceptions.RedisError:  # pragma: no cover - closing a dead connection
            pass

    # --- calls -------------------------------------------------------------------------------
    @staticmethod
    def _rec_json(record: CallRecord, updated_at: float) -> str:
        return dumps({"call_id": record.call_id, "tenant": record.tenant, "agent_id": record.agent_id,
                      "status": record.status, "created_at": record.created_at, "updated_at": updated_at,
                      "state": record.state, "summary": record.summary, "meta": record.meta})

    @staticmethod
    def _call(version: str, rec: str) -> CallRecord:
        d = loads(rec)
        return CallRecord(d["call_id"], d["tenant"], d["agent_id"], d["status"], d["created_at"], d["updated_at"],
                          int(version), d["state"], d["summary"] or None, d["meta"])

    @staticmethod
    def ck(tenant: str, call_id: str) -> str:
        """The call's name in keys and index members: ``#`` + digest (``#`` never occurs in a call id)."""
        return "#" + call_key(tenant, call_id)

    @_guard
    def get_call(self, call_id: str, *, tenant: str) -> CallRecord | None:
        version, rec = self.client.hmget(self.k("call", self.ck(tenant, call_id)), "v", "rec")
        return self._call(version, rec) if rec is not None else None

    @_guard
    def create_call(self, record: CallRecord) -> bool:
        c = self.ck(record.tenant, record.call_id)
        return bool(self._create(
            keys=[self.k("call", c)],
            args=[self.prefix, c, record.version, record.tenant, record.status, record.updated_at,
                  self._rec_json(record, record.updated_at)]))

    def _cas(self, record: CallRecord, expected_version: int, chunk: tuple[int, str] | None,
             detail_ttl_s: float | None = None) -> bool:
        now = time.time()
        ttl_ms = max(1, int(round(detail_ttl_s * 1000))) if detail_ttl_s is not None else 0
        cid = self.ck(record.tenant, record.call_id)
        args: list[Any] = [self.prefix, cid, expected_version, self._rec_json(record, now),
                           record.tenant, record.status, now, ttl_ms]
        if chunk is not None:
            args += [chunk[0], chunk[1]]
        ok = self._cas_script(keys=[self.k("call", cid), self.k("chunks", cid), self.k("tr", cid), self.k("trn", cid)],
                              args=args)
        if not ok:
            return False
        record.version, record.updated_at = expected_version + 1, now
        return True

    @_guard
    def save_call(self, record: CallRecord, expected_version: int, *, detail_ttl_s: float | None = None) -> bool:
        return self._cas(record, expected_version, None, detail_ttl_s)

    @_guard
    def list_calls(self, tenant: str | None = None, status: str | None = None, limit: int = 500) -> list[CallRecord]:
        if tenant is not None and status is not None:
            index = self.k("calls", "ts", tenant, status)
        elif tenant is not None:
            index = self.k("calls", "t", tenant)
        elif status is not None:
            index = self.k("calls", "s", status)
        else:
            index = self.k("calls", "all")
        ids = self.client.zrevrange(index, 0, max(limit, 1) - 1)
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for c in ids:
            pipe.hmget(self.k("call", c), "v", "rec")
        out = []
        for version, rec in pipe.execute():
            if rec is None:
                continue
            r = self._call(version, rec)
            if (tenant is None or r.tenant == tenant) and (status is None or r.status == status):
                out.append(r)
        out.sort(key=lambda r: r.updated_at, reverse=True)
        return out[:limit]

    @_guard
    def count_calls(self, tenant: str | None = None, status: str | None = None) -> int:
        """Cheap count from the indexes (the active-calls gauge uses it)."""
        if tenant is not None and status is not None:
            return int(self.client.zcard(self.k("calls", "ts", tenant, status)))
        if tenant is not None:
            return int(self.client.zcard(self.k("calls", "t", tenant)))
        if status is not None:
            return int(self.client.zcard(self.k("calls", "s", status)))
        return int(self.client.zcard(self.k("calls", "all")))

    # --- chunks ------------------------------------------------------------------------------
    @_guard
    def commit_chunk(self, record: CallRecord, expected_version: int, seq: int, entry: dict[str, Any]) -> bool:
        return self._cas(record, expected_version, (int(seq), dumps(entry)))

    @_guard
    def get_chunk(self, call_id: str, seq: int, *, tenant: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.k("chunks", self.ck(tenant, call_id)), str(int(seq)))
        return loads(raw) if raw is not None else None

    @_guard
    def list_chunks(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]:
        raw = self.client.hgetall(self.k("chunks", self.ck(tenant, call_id)))
        return [loads(raw[s]) for s in sorted(raw, key=int)]

    # --- transcripts -------------------------------------------------------------------------
    @_guard
    def put_transcript(self, call_id: str, key: str, entry: dict[str, Any], *, tenant: str) -> None:
        c = self.ck(tenant, call_id)
        self._put_tr(keys=[self.k("tr", c), self.k("trn", c)], args=[key, dumps(entry)])

    @_guard
    def list_transcripts(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]:
        rows = []
        for value in self.client.hgetall(self.k("tr", self.ck(tenant, call_id))).values():
            n, _, raw = value.partition("|")
            entry = loads(raw)
            start = entry.get("start")
            rows.append(((start is not None, start if start is not None else 0.0, int(n)), entry))
        rows.sort(key=lambda r: r[0])  # SQLite: ORDER BY start (NULL first), rowid
        return [e for _, e in rows]

    # --- alerts ------------------------------------------------------------------------------
    @staticmethod
    def _alert(alert_id: int, rec: str, acked_at: str | None, acked_by: str | None) -> AlertRecord:
        d = loads(rec)
        return AlertRecord(alert_id, d["call_id"], d["tenant"], d["agent_id"], d["level"], d["kind"],
                           d["created_at"], d["payload"],
                           loads(acked_at) if acked_at is not None else None,
                           loads(acked_by) if acked_by is not None else None)

    @_guard
    def add_alert(self, call_id: str, tenant: str, agent_id: str | None, level: int, kind: str,
                  payload: dict[str, Any], dedup_key: str) -> AlertRecord | None:
        created = time.time()
        rec = dumps({"call_id": call_id, "tenant": tenant, "agent_id": agent_id, "level": int(level),
                      "kind": kind, "created_at": created, "payload": payload})
        alert_id = int(self._add_alert(args=[self.prefix, dedup_scope(tenant, dedup_key), self.ck(tenant, call_id),
                                             tenant, agent_id or "", rec]))
        if alert_id == 0:
            return None
        return self._alert(alert_id, rec, None, None)

    def _index_for(self, tenant: str | None, agent_id: str | None, call_id: str | None, include_acked: bool) -> str:
        if call_id is not None and tenant is not None:
            return self.k("alerts", "c", self.ck(tenant, call_id))
        if agent_id is not None:
            return self.k("alerts", "a", agent_id)
        if tenant is not None:
            return self.k("alerts", "t" if include_acked else "u", tenant)
        return self.k("alerts", "all" if include_acked else "u")

    @_guard
    def list_alerts(self, *, tenant: str | None = None, agent_id: str | None = None, call_id: str | None = None,
                    after: int = 0, limit: int = 100, include_acked: bool = True) -> list[AlertRecord]:
        index = self._index_for(tenant, agent_id, call_id, include_acked)
        out: list[AlertRecord] = []
        page = max(limit, 100)
        cursor = f"({int(after)}"
        while len(out) < limit:
            ids = self.client.zrangebyscore(index, cursor, "+inf", start=0, num=page)
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for alert_id in ids:
                pipe.hmget(self.k("alert", alert_id), "rec", "acked_at", "acked_by")
            for alert_id, (rec, acked_at, acked_by) in zip(ids, pipe.execute()):
                if rec is None:
                    continue
                a = self._alert(int(alert_id), rec, acked_at, acked_by)
                if ((tenant is None or a.tenant == tenant) and (agent_id is None or a.agent_id == agent_id)
                        and (call_id is None or a.call_id == call_id)
                        and (include_acked or a.acked_at is None)):
                    out.append(a)
                    if len(out) >= limit:
                        break
            if len(ids) < page:
                break
            cursor = f"({int(ids[-1])}"
        return out

    @_guard
    def get_alert(self, alert_id: int) -> AlertRecord | None:
        rec, acked_at, acked_by = self.client.hmget(self.k("alert", str(int(alert_id))), "rec", "acked_at", "acked_by")
        return self._alert(int(alert_id), rec, acked_at, acked_by) if rec is not None else None

    @_guard
    def ack_alert(self, alert_id: int, by: str | None) -> AlertRecord | None:
        row = self._ack(args=[self.prefix, int(alert_id), dumps(time.time()), dumps(by)])
        if not row:
            return None
        rec, acked_at, acked_by = row
        return self._alert(int(alert_id), rec, acked_at, acked_by)

    @_guard
    def last_alert_id(self) -> int:
        return int(self.client.get(self.k("alerts", "seq")) or 0)
