"""API keys: creation, salted hashes, lookup, revocation; kept in the same backend as the calls.

A key looks like ``nq_<key id>_<secret>``.  Only the key id (public, 12 hex characters), a random
per-key salt and ``sha256(salt + secret)`` are stored (``alg`` may also be ``scrypt`` for records
written that way).  Generated secrets carry 256 random bits, so a slow password hash would add
nothing but a CPU cost an attacker could trigger with every wrong key; the operator-chosen
bootstrap admin key (``NUQI_BOOTSTRAP_ADMIN_KEY``) must be at least 16 characters.  The raw key is
shown once, in the response that creates it.

Backends: the SQLite file of the call store (table ``api_keys``) or Redis (hash ``{prefix}:apikey:{id}``
plus the set ``{prefix}:apikeys``).  A worker caches a verified key for ``key_cache_s`` seconds;
revoking drops it from this worker's cache at once and from the others' within that time.  Open connections
(SSE, WebSockets) look their key up again by id within the same period (:meth:`KeyManager.refresh`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import redis

from app.security.roles import ROLES
from app.store.redis import RedisStore
from app.store.sqlite import SQLiteStore
from pipelines.errors import InputError, NotFoundError, StoreUnavailableError

logger = logging.getLogger("nuqi.security.keys")

BOOTSTRAP_ID = "bootstrap"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_RE = re.compile(r"^nq_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    role: str
    agent_id: str | None
    name: str
    created_at: float
    revoked_at: float | None
    rate_per_s: float | None  # None = the settings' default
    burst: int | None
    alg: str  # sha256 | scrypt
    salt: str  # hex
    hash: str  # hex

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the salt and hash."""
        return {"key_id": self.key_id, "tenant": self.tenant, "role": self.role, "agent_id": self.agent_id,
                "name": self.name, "created_at": self.created_at, "revoked_at": self.revoked_at,
                "active": self.active, "rate_per_s": self.rate_per_s, "burst": self.burst}


def _digest(alg: str, salt: bytes, secret: str) -> str:
    if alg == "scrypt":
        return hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT).hex()
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def hash_secret(secret: str, alg: str = "sha256") -> tuple[str, str]:
    salt = secrets.token_bytes(16)
    return salt.hex(), _digest(alg, salt, secret)


def check_secret(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(_digest(key.alg, bytes.fromhex(key.salt), secret), key.hash)


def parse_key(raw: str) -> tuple[str, str]:
    """``(key_id, secret)`` of a presented key; anything not shaped like a generated key is
    checked against the bootstrap admin key."""
    m = KEY_RE.match(raw)
    return (m.group(1), m.group(2)) if m else (BOOTSTRAP_ID, raw)


# --------------------------------------------------------------------------- backends
class KeyStore(ABC):
    @abstractmethod
    def put(self, key: ApiKey) -> None: ...

    @abstractmethod
    def get(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    def list(self, tenant: str | None = None) -> list[ApiKey]: ...

    @abstractmethod
    def revoke(self, key_id: str, at: float) -> ApiKey | None:
        """Idempotent: the first revocation time is kept."""


_SQL = """CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, body TEXT NOT NULL, revoked_at REAL)"""


class SQLiteKeyStore(KeyStore):
    """Table ``api_keys`` in the call store's SQLite file (own connections, WAL like the store)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._exec(_SQL)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite key store error: {exc}") from exc

    def put(self, key: ApiKey) -> None:
        self._exec("INSERT OR REPLACE INTO api_keys (key_id, tenant, body, revoked_at) VALUES (?,?,?,?)",
                   (key.key_id, key.tenant, json.dumps(asdict(key)), key.revoked_at))

    def get(self, key_id: str) -> ApiKey | None:
        rows = self._exec("SELECT body FROM api_keys WHERE key_id=?", (key_id,))
        return ApiKey(**json.loads(rows[0][0])) if rows else None

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        if tenant is None:
            rows = self._exec("SELECT body FROM api_keys ORDER BY rowid")
        else:
            rows = self._exec("SELECT body FROM api_keys WHERE tenant=? ORDER BY rowid", (tenant,))
        return [ApiKey(**json.loads(r[0])) for r in rows]

    def revoke(self, key_id: str, at: float) -> ApiKey | None:
        try:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT body FROM api_keys WHERE key_id=?", (key_id,)).fetchall()
                if not rows:
                    db.execute("COMMIT")
                    return None
                key = ApiKey(**json.loads(rows[0][0]))
                if key.revoked_at is None:
                    key = replace(key, revoked_at=at)
                    db.execute("UPDATE api_keys SET body=?, revoked_at=? WHERE key_id=?",
                               (json.dumps(asdict(key)), at, key_id))
                db.execute("COMMIT")
                return key
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite key store error: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_REVOKE_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local key = cjson.decode(raw)
if key['revoked_at'] == cjson.null or key['revoked_at'] == nil then
  key['revoked_at'] = tonumber(ARGV[1])
  raw = cjson.encode(key)
  redis.call('SET', KEYS[1], raw)
end
return raw
"""


class RedisKeyStore(KeyStore):
    """``{prefix}:apikey:{id}`` (JSON) and the id set ``{prefix}:apikeys`` in the call store's Redis."""

    def __init__(self, client: Any, prefix: str, safe_url: str = "redis") -> None:
        self.client, self.prefix, self.safe_url = client, prefix, safe_url
        self._revoke = client.register_script(_REVOKE_LUA)

    def _k(self, key_id: str) -> str:
        return f"{self.prefix}:apikey:{key_id}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            logger.warning("Redis key store at %s unavailable: %s: %s", self.safe_url, type(exc).__name__, exc)
            raise StoreUnavailableError(f"Redis key store unavailable ({type(exc).__name__})") from exc

    def put(self, key: ApiKey) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._k(key.key_id), json.dumps(asdict(key)))
        pipe.zadd(f"{self.prefix}:apikeys", {key.key_id: key.created_at})
        self._call(pipe.execute)

    def get(self, key_id: str) -> ApiKey | None:
        raw = self._call(self.client.get, self._k(key_id))
        return ApiKey(**json.loads(raw)) if raw else None

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        ids = self._call(self.client.zrange, f"{self.prefix}:apikeys", 0, -1)
        raws = self._call(self.client.mget, [self._k(i) for i in ids]) if ids else []
        keys = [ApiKey(**json.loads(r)) for r in raws if r]
        return [k for k in keys if tenant is None or k.tenant == tenant]

    def revoke(self, key_id: str, at: float) -> ApiKey | None:
        raw = self._call(self._revoke, keys=[self._k(key_id)], args=[repr(at)])
        return ApiKey(**json.loads(raw)) if raw else None


def open_key_store(store: Any) -> KeyStore:
    """The key store living next to ``store`` (an ``app.store`` SQLiteStore or RedisStore)."""
    if isinstance(store, RedisStore):
        return RedisKeyStore(store.client, store.prefix, store.safe_url)
    if isinstance(store, SQLiteStore):
        return SQLiteKeyStore(store.path)
    raise TypeError(f"no API-key backend for store {type(store).__name__}")


# --------------------------------------------------------------------------- manager
class KeyManager:
    """Create / verify / list / revoke keys, with a short per-worker verification cache."""

    def __init__(self, backend: KeyStore, cache_s: float = 2.0) -> None:
        self.backend = backend
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}  # key id -> (until, key): open connections' checks
        self._lock = threading.Lock()

    def create(self, tenant: str, role: str, *, agent_id: str | None = None, name: str = "",
               rate_per_s: float | None = None, burst: int | None = None) -> tuple[ApiKey, str]:
        """A new key and its raw form (``nq_<id>_<secret>``; shown once)."""
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
        if not TENANT_RE.match(tenant or ""):
            raise InputError("tenant must be 1-64 characters of letters, digits, '_', '.' or '-'", field="tenant")
        if role == "agent" and not agent_id:
            raise InputError("an agent key needs agent_id: agents only see their own calls", field="agent_id")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        salt, digest = hash_secret(secret, "sha256")
        key = ApiKey(key_id, tenant, role, agent_id, name, time.time(), None, rate_per_s, burst, "sha256", salt,
                     digest)
        self.backend.put(key)
        logger.info("API key %s created: tenant=%s role=%s", key_id, tenant, role)
        return key, f"nq_{key_id}_{secret}"

    def ensure_bootstrap(self, raw: str, tenant: str) -> ApiKey:
        """Create (or rotate to ``raw``) the operator's bootstrap admin key; idempotent across workers."""
        if len(raw) < 16:
            raise InputError("NUQI_BOOTSTRAP_ADMIN_KEY must be at least 16 characters", field="bootstrap_admin_key")
        existing = self.backend.get(BOOTSTRAP_ID)
        if existing and existing.tenant == tenant and existing.active and check_secret(existing, raw):
            return existing
        salt, digest = hash_secret(raw, "sha256")
        key = ApiKey(BOOTSTRAP_ID, tenant, "admin", None, "bootstrap admin (NUQI_BOOTSTRAP_ADMIN_KEY)",
                     time.time(), None, None, None, "sha256", salt, digest)
        self.backend.put(key)
        logger.warning("bootstrap admin key installed for tenant %s", tenant)
        return key

    def cached(self, raw: str) -> tuple[bool, ApiKey | None]:
        """(hit, key) from this worker's cache only: no I/O, safe on the event loop."""
        with self._lock:
            hit = self._cache.get(hashlib.sha256(raw.encode()).hexdigest())
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def verify(self, raw: str) -> ApiKey | None:
        """The active key ``raw`` stands for, or None."""
        cache_key = hashlib.sha256(raw.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        key_id, secret = parse_key(raw)
        key = self.backend.get(key_id)
        ok = key if key is not None and key.active and check_secret(key, secret) else None
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[cache_key] = (now + self.cache_s, ok)
        return ok

    def get(self, key_id: str) -> ApiKey | None:
        return self.backend.get(key_id)

    def current(self, key_id: str) -> tuple[bool, ApiKey | None]:
        """(hit, key) of this worker's by-id cache only (no I/O, safe on the event loop); see :meth:`refresh`."""
        with self._lock:
            hit = self._by_id.get(key_id)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def refresh(self, key_id: str) -> ApiKey | None:
        """The stored key ``key_id`` (revoked or not; None when gone), cached for ``cache_s`` so that every open
        connection of one key shares one store read per period."""
        key = self.backend.get(key_id)
        with self._lock:
            if len(self._by_id) > 10000:
                self._by_id.clear()
            self._by_id[key_id] = (time.monotonic() + self.cache_s, key)
        return key

    def forget(self) -> None:
        """Empty this worker's caches (the key store lost or changed its keys)."""
        with self._lock:
            self._cache.clear()
            self._by_id.clear()

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        return self.backend.list(tenant)

    def revoke(self, key_id: str) -> ApiKey:
        key = self.backend.revoke(key_id, time.time())
        if key is None:
            raise NotFoundError(f"API key {key_id!r} not found", key_id=key_id)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1] is None or v[1].key_id != key_id}
            self._by_id.pop(key_id, None)
        logger.info("API key %s revoked", key_id)
        return key
