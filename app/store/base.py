"""Store interface shared by the SQLite and Redis backends.

Calls are namespaced by tenant: a call is ``(tenant, call_id)``, so two tenants may use the same call id
and each gets its own call (no existence oracle, no squatting of another tenant's id).  Every method that
names a call takes its ``tenant`` (keyword-only, so it cannot be swapped with the id); alert dedup keys are
unique per tenant.  In Redis the raw call id never appears in a key name (:func:`call_key`).

Concurrency model: a call's state carries a ``version``; writers use compare-and-set
(:meth:`Store.commit_chunk`, :meth:`Store.save_call`) so two workers can never both
apply a chunk to the same state.  Everything is synchronous and is called from the
analysis thread pool, never on the event loop.
"""
from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


def call_key(tenant: str, call_id: str) -> str:
    """The store's name of a call: a digest of tenant and call id (32 hex digits).  A call id may be personal (a
    phone number): in Redis key names, monitoring and ``SCAN`` output it shows as this digest.  Unkeyed on purpose:
    the call's record holds the id itself, so whoever reads Redis reads the ids anyway, and a keyed digest would
    orphan every call when the key changed."""
    return hashlib.sha256(f"{tenant}\x00{call_id}".encode()).hexdigest()[:32]


def dedup_scope(tenant: str, dedup_key: str) -> str:
    """Alert dedup keys are unique per tenant (``/`` cannot occur in a tenant name)."""
    return f"{tenant}/{dedup_key}"


@dataclass
class CallRecord:
    call_id: str
    tenant: str = "default"
    agent_id: str | None = None
    status: str = "active"  # active | ended
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # pipelines.session.CallState.state_dict()
    summary: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertRecord:
    id: int
    call_id: str
    tenant: str
    agent_id: str | None
    level: int
    kind: str
    created_at: float
    payload: dict[str, Any]
    acked_at: float | None = None
    acked_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "call_id": self.call_id, "tenant": self.tenant, "agent_id": self.agent_id,
            "level": self.level, "kind": self.kind, "created_at": self.created_at,
            "acked": self.acked_at is not None, "acked_at": self.acked_at, "acked_by": self.acked_by,
            **self.payload,
        }


class Store(ABC):
    """Backend-neutral persistence API."""

    name = "store"

    # --- lifecycle ---------------------------------------------------------------------------
    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError if the backend cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook: a backend without resources need not override it
        """Release the backend's connections (default: nothing to release)."""

    def check_intact(self) -> bool:
        """False (once per loss) when the backend lost the data this process saw, e.g. a Redis restarted without
        persistence or flushed; True otherwise.  A file store cannot lose its data behind the process's back."""
        return True

    # --- calls -------------------------------------------------------------------------------
    @abstractmethod
    def get_call(self, call_id: str, *, tenant: str) -> CallRecord | None: ...

    @abstractmethod
    def create_call(self, record: CallRecord) -> bool:
        """Insert if absent; False when the tenant's call already exists."""

    @abstractmethod
    def save_call(self, record: CallRecord, expected_version: int, *, detail_ttl_s: float | None = None) -> bool:
        """Compare-and-set the whole record; bumps ``record.version`` on success.

        ``detail_ttl_s`` (when the call ends): its timeline entries and transcripts may go that many seconds
        from now (the call record with its summary, and its alerts, stay), set in the same atomic write, so a
        worker that dies right after the end leaves no detail behind forever. Redis expires the keys itself;
        SQLite deletes every call's due detail whenever a call ends this way."""

    @abstractmethod
    def list_calls(self, tenant: str | None = None, status: str | None = None,
                   limit: int = 500) -> list[CallRecord]: ...

    # --- chunks (timeline + idempotency) --------------------------------------------------------
    @abstractmethod
    def commit_chunk(self, record: CallRecord, expected_version: int, seq: int, entry: dict[str, Any]) -> bool:
        """Atomically store the chunk's timeline entry and the new call state (CAS on version)."""

    @abstractmethod
    def get_chunk(self, call_id: str, seq: int, *, tenant: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def list_chunks(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]: ...

    # --- transcripts ------------------------------------------------------------------------------
    @abstractmethod
    def put_transcript(self, call_id: str, key: str, entry: dict[str, Any], *, tenant: str) -> None:
        """Insert or replace (interim snippets are superseded by the final one with the same key)."""

    @abstractmethod
    def list_transcripts(self, call_id: str, *, tenant: str) -> list[dict[str, Any]]: ...

    # --- alerts -----------------------------------------------------------------------------------
    @abstractmethod
    def add_alert(self, call_id: str, tenant: str, agent_id: str | None, level: int, kind: str,
                  payload: dict[str, Any], dedup_key: str) -> AlertRecord | None:
        """Persist an alert; None when an alert of the tenant with the same dedup_key exists (idempotent)."""

    @abstractmethod
    def list_alerts(self, *, tenant: str | None = None, agent_id: str | None = None, call_id: str | None = None,
                    after: int = 0, limit: int = 100, include_acked: bool = True) -> list[AlertRecord]: ...

    @abstractmethod
    def get_alert(self, alert_id: int) -> AlertRecord | None: ...

    @abstractmethod
    def ack_alert(self, alert_id: int, by: str | None) -> AlertRecord | None:
        """Idempotent: acking twice keeps the first ack time."""

    @abstractmethod
    def last_alert_id(self) -> int: ...
