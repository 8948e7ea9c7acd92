"""Embedded default store: one SQLite file (WAL mode), safe across threads and worker processes.

Calls are keyed by ``(tenant, call_id)`` (so are their chunks, transcripts and detail expiry); alert dedup keys
are stored scoped by tenant.  A file written before calls were namespaced (primary key ``call_id`` alone) is
migrated in place when it is opened: one transaction, every call keeps its tenant and id (ids were unique then).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from app.store.base import AlertRecord, CallRecord, Store, dedup_scope
from app.store.codec import dumps, loads
from pipelines.errors import StoreUnavailableError

logger = logging.getLogger("nuqi.store.sqlite")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT NOT NULL, tenant TEXT NOT NULL, agent_id TEXT, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, summary TEXT, meta TEXT NOT NULL, PRIMARY KEY (tenant, call_id)
);
CREATE INDEX IF NOT EXISTS calls_tenant_status ON calls(tenant, status);
CREATE TABLE IF NOT EXISTS chunks (
    tenant TEXT NOT NULL, call_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (tenant, call_id, seq)
);
CREATE TABLE IF NOT EXISTS transcripts (
    tenant TEXT NOT NULL, call_id TEXT NOT NULL, key TEXT NOT NULL, start REAL, entry TEXT NOT NULL,
    PRIMARY KEY (tenant, call_id, key)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, tenant TEXT NOT NULL, agent_id TEXT,
    level INTEGER NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL, payload TEXT NOT NULL,
    acked_at REAL, acked_by TEXT, dedup_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS detail_expiry (
    tenant TEXT NOT NULL, call_id TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (tenant, call_id)
);
CREATE INDEX IF NOT EXISTS detail_expiry_at ON detail_expiry(expires_at);
CREATE INDEX IF NOT EXISTS alerts_agent ON alerts(agent_id, id);
CREATE INDEX IF NOT EXISTS alerts_tenant ON alerts(tenant, id);
"""

# a file written before calls were namespaced by tenant (17.9): the old tables are renamed, the new ones made, the
# rows copied (chunks, transcripts and expiry take their call's tenant) and the old tables dropped, in one transaction
_V1_TABLES = ("calls", "chunks", "transcripts", "detail_expiry")
_MIGRATE_V1 = """
INSERT INTO calls SELECT call_id, tenant, agent_id, status, created_at, updated_at, version, state, summary, meta
    FROM calls_v1;
INSERT INTO chunks SELECT c.tenant, k.call_id, k.seq, k.entry FROM chunks_v1 k JOIN calls_v1 c USING (call_id);
INSERT INTO transcripts SELECT c.tenant, t.call_id, t.key, t.start, t.entry
    FROM transcripts_v1 t JOIN calls_v1 c USING (call_id) ORDER BY t.rowid;
INSERT INTO detail_expiry SELECT c.tenant, d.call_id, d.expires_at FROM detail_expiry_v1 d JOIN calls_v1 c USING (call_id);
UPDATE alerts SET dedup_key = tenant || '/' || dedup_key WHERE instr(dedup_key, '/') = 0;
DROP TABLE calls_v1; DROP TABLE chunks_v1; DROP TABLE transcripts_v1; DROP TABLE detail_expiry_v1
"""


class SQLiteStore(Store):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the SQLite directory {self.path.parent}: {exc}") from exc
        self._local = threading.local()
        with self._tx() as db:  # executescript() would COMMIT the open transaction itself
            old = self._unnamespaced(db)
            if old:
                for table in _V1_TABLES:
                    db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
                db.execute("DROP INDEX IF EXISTS calls_tenant_status")
                db.execute("DROP INDEX IF EXISTS detail_expiry_at")
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            if old:
                for statement in filter(str.strip, _MIGRATE_V1.split(";")):
                    db.execute(statement)
                logger.warning("SQLite store %s: calls namespaced by tenant (the file was migrated)", self.path)
        self._checkpointer = _Checkpointer(self.path)
        logger.info("SQLite store at %s", self.path)

    @staticmethod
    def _unnamespaced(db: sqlite3.Connection) -> bool:
        """True for a file of the layout before calls were namespaced by tenant (``calls`` keyed by ``call_id``)."""
        cols = db.execute("PRAGMA table_info(calls)").fetchall()  # (cid, name, type, notnull, default, pk)
        return bool(cols) and [c[1] for c in sorted(cols, key=lambda c: c[5]) if c[5]] == ["call_id"]

    # --- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                # no checkpoint inside a request's commit (it copies the WAL into the database file and fsyncs,
                # on whichever request commits at the time); _Checkpointer does it in the background
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.execute(f"PRAGMA journal_size_limit={_Checkpointer.WAL_LIMIT_BYTES}")  # applied by writers
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store error: {exc}") from exc

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store error: {exc}") from exc

    def ping(self) -> None:
        self._query("SELECT 1")

    def close(self) -> None:
        self._checkpointer.stop()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- calls -------------------------------------------------------------------------------
    @staticmethod
    def _call(row: tuple) -> CallRecord:
        call_id, tenant, agent_id, status, created, updated, version, state, summary, meta = row
        return CallRecord(call_id, tenant, agent_id, status, created, updated, version, loads(state),
                          loads(summary) if summary else None, loads(meta))

    _CALL_COLS = "call_id, tenant, agent_id, status, created_at, updated_at, version, state, summary, meta"

    def get_call(self, call_id: str, *, tenant: str) -> CallRecord | None:
        rows = self._query(f"SELECT {self._CALL_COLS} FROM calls WHERE tenant=? AND call_id=?", (tenant, call_id))
        return self._call(rows[0]) if rows else None

    def create_call(self, record: CallRecord) -> bool:
        with self._tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO calls ({self._CALL_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.call_id, record.tenant, record.agent_id, record.status, record.created_at, record.updated_at,
                 record.version, dumps(record.state), dumps(record.summary) if record.summary else None,
                 dumps(record.meta)),
            )
            return cur.rowcount == 1

    def _cas(self, db: sqlite3.Connection, record: CallRecord, expected_version: int) -> bool:
        now = time.time()
        cur = db.execute(
            "UPDATE calls SET agent_id=?, status=?, updated_at=?, version=?, state=?, summary=?, meta=? "
            "WHERE tenant=? AND call_id=? AND version=?",
            (record.agent_id, record.status, now, expected_version + 1, dumps(record.state),
             dumps(record.summary) if record.summary else None, dumps(record.meta), record.tenant, record.call_id,
             expected_version),
        )
        if cur.rowcount != 1:
            return False
        record.version, record.updated_at = expected_version + 1, now
        return True

    def save_call(self, record: CallRecord, expected_version: int, *, detail_ttl_s: float | None = None) -> bool:
        with self._tx() as db:
            if not self._cas(db, record, expected_version):
                return False
            if detail_ttl_s is not None:
                self._expire_detail(db, record.tenant, record.call_id, detail_ttl_s)
            return True

    def list_calls(self, tenant: str | None = None, status: str | None = None, limit: int = 500) -> list[CallRecord]:
        sql, args = f"SELECT {self._CALL_COLS} FROM calls WHERE 1=1", []
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY updated_at DESC LIMIT ?"
        args.append(limit)
        return [self._call(r) for r in self._query(sql, tuple(args))]

    # --- chunks ------------------------------------------------------------------------------
    def commit_chunk(self, record: CallRecord, expected_version: int, seq: int, entry: dict[str, Any]) -> bool:
        with self._tx() as db:
            if not self._cas(db, record, expected_version):
                return False
            db.execute("INSERT OR REPLACE INTO chunks (tenant, call_id, seq, entry) VALUES (?,?,?,?)",
                       (record.tenant, record.call_id, seq, dumps(entry)))
            return True

    def get_chunk(self, call_id: str, seq: int, *, tenant: str) -> dict[str, Any] | None:
        rows = self._query("SELECT entry FROM chunks WHERE tenant=? AND call_id=? AND seq=?", (tenant, call_id, seq))
        return loads(rows[0][0]) if rows else None

    def list_chunks(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT entry FROM chunks WHERE tenant=? AND call_id=? ORDER BY seq", (tenant, call_id))
        return [loads(r[0]) for r in rows]

    @staticmethod
    def _expire_detail(db: sqlite3.Connection, tenant: str, call_id: str, after_s: float) -> None:
        """Schedule the call's detail, and delete every call's detail that is due (no sweeper thread)."""
        now = time.time()
        db.execute("INSERT OR REPLACE INTO detail_expiry (tenant, call_id, expires_at) VALUES (?,?,?)",
                   (tenant, call_id, now + after_s))
        due = "SELECT tenant, call_id FROM detail_expiry WHERE expires_at <= ?"
        db.execute(f"DELETE FROM chunks WHERE (tenant, call_id) IN ({due})", (now,))
        db.execute(f"DELETE FROM transcripts WHERE (tenant, call_id) IN ({due})", (now,))
        db.execute("DELETE FROM detail_expiry WHERE expires_at <= ?", (now,))

    # --- transcripts -------------------------------------------------------------------------
    def put_transcript(self, call_id: str, key: str, entry: dict[str, Any], *, tenant: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO transcripts (tenant, call_id, key, start, entry) VALUES (?,?,?,?,?)",
                       (tenant, call_id, key, entry.get("start"), dumps(entry)))

    def list_transcripts(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT entry FROM transcripts WHERE tenant=? AND call_id=? ORDER BY start, rowid",
                           (tenant, call_id))
        return [loads(r[0]) for r in rows]

    # --- alerts ------------------------------------------------------------------------------
    _ALERT_COLS = "id, call_id, tenant, agent_id, level, kind, created_at, payload, acked_at, acked_by"

    @staticmethod
    def _alert(row: tuple) -> AlertRecord:
        id_, call_id, tenant, agent_id, level, kind, created, payload, acked_at, acked_by = row
        return AlertRecord(id_, call_id, tenant, agent_id, level, kind, created, loads(payload), acked_at, acked_by)

    def add_alert(self, call_id: str, tenant: str, agent_id: str | None, level: int, kind: str,
                  payload: dict[str, Any], dedup_key: str) -> AlertRecord | None:
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO alerts (call_id, tenant, agent_id, level, kind, created_at, payload, dedup_key) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (call_id, tenant, agent_id, level, kind, time.time(), dumps(payload), dedup_scope(tenant, dedup_key)),
            )
            if cur.rowcount != 1:
                return None
            row = db.execute(f"SELECT {self._ALERT_COLS} FROM alerts WHERE id=?", (cur.lastrowid,)).fetchone()
            return self._alert(row)

    def list_alerts(self, *, tenant: str | None = None, agent_id: str | None = None, call_id: str | None = None,
                    after: int = 0, limit: int = 100, include_acked: bool = True) -> list[AlertRecord]:
        sql, args = f"SELECT {self._ALERT_COLS} FROM alerts WHERE id>?", [after]
        for col, val in (("tenant", tenant), ("agent_id", agent_id), ("call_id", call_id)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        if not include_acked:
            sql += " AND acked_at IS NULL"
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [self._alert(r) for r in self._query(sql, tuple(args))]

    def get_alert(self, alert_id: int) -> AlertRecord | None:
        rows = self._query(f"SELECT {self._ALERT_COLS} FROM alerts WHERE id=?", (alert_id,))
        return self._alert(rows[0]) if rows else None

    def ack_alert(self, alert_id: int, by: str | None) -> AlertRecord | None:
        with self._tx() as db:
            db.execute("UPDATE alerts SET acked_at=?, acked_by=? WHERE id=? AND acked_at IS NULL",
                       (time.time(), by, alert_id))
            row = db.execute(f"SELECT {self._ALERT_COLS} FROM alerts WHERE id=?", (alert_id,)).fetchone()
            return self._alert(row) if row else None

    def last_alert_id(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM alerts")
        return int(rows[0][0])


class _Checkpointer:
    """Checkpoints the WAL from a background thread, off the request path.

    Every ``interval_s`` a PASSIVE checkpoint copies committed WAL frames into the database file
    without blocking readers or writers (a busy database just means the next round does it).  Each
    process that opens the store runs one; two processes checkpointing at once is harmless.  Writers
    cut the WAL file back to ``WAL_LIMIT_BYTES`` when SQLite restarts it (``journal_size_limit``).
    """

    WAL_LIMIT_BYTES = 64 * 1024 * 1024

    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        self._path = path
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nuqi-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None, check_same_thread=False)
            while not self._stop.wait(self._interval):
                self.checkpoint(conn)
            self.checkpoint(conn)
        except sqlite3.Error as exc:
            logger.warning("SQLite checkpointer for %s stopped: %s", self._path, exc)
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # busy or briefly unavailable: try again next round
            logger.debug("SQLite checkpoint skipped: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
