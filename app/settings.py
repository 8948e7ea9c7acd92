"""The service's one settings object: the analysis :class:`~pipelines.settings.Settings` plus the service-only
groups (store, security, ingest, telephony) and the server's own options.  Environment prefix ``NUQI_``, flat
names (``NUQI_STORE``, ``NUQI_AUTH_ENABLED``, ``NUQI_MAX_BODY_BYTES``, ``NUQI_RTP_PORTS`` …), one group per concern.
Built once by ``nuqi serve`` / ``create_app`` and passed down through the ``Runtime``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from app.security.roles import ROLES
from pipelines.settings import ENV, Settings


class StoreSettings(BaseSettings):
    model_config = ENV
    # "sqlite" (embedded default, file under state_dir) or "sqlite:///path.db" or "redis://host:port/db"
    url: str = Field("sqlite", validation_alias="nuqi_store")  # env NUQI_STORE
    redis_prefix: str = "nuqi"  # key prefix in Redis (several deployments may share one Redis db)
    redis_connect_timeout_s: float = 1.0  # fail fast (503) when Redis cannot be reached
    redis_socket_timeout_s: float = 2.0  # per-command timeout
    redis_max_connections: int = 64  # connection pool size per worker process
    # after a call ends, its per-chunk timeline and transcripts are deleted after this many seconds (its record,
    # summary and alerts stay); ~230 KB per 75-s call, which Redis holds in memory. 0 = keep them forever
    ended_call_detail_ttl_s: float = 24 * 3600.0


class SecuritySettings(BaseSettings):
    model_config = ENV
    # False = open API (every request acts as admin of tenant "default"; `nuqi serve` warns loudly)
    auth_enabled: bool = False
    # optional admin key created at start-up (env NUQI_BOOTSTRAP_ADMIN_KEY); use it to create the other keys
    bootstrap_admin_key: str | None = None
    bootstrap_tenant: str = "default"  # tenant of the bootstrap admin key
    rate_limit_per_s: float = 50.0  # default token-bucket refill per API key (a key may carry its own)
    rate_limit_burst: int = 100  # default bucket size per API key
    # how long a worker caches a key lookup: a revocation reaches other workers, and open SSE streams and WebSockets
    # (app.security.streams), within it
    key_cache_s: float = 2.0
    # call `meta` is stored and returned masked (「***78」), except these fields, which are only redacted (phone,
    # ID, card numbers and e-mails inside them become tags).  Env: comma-separated, NUQI_PII_KEEP_META_FIELDS=queue,skill
    pii_keep_meta_fields: Annotated[frozenset[str], NoDecode] = frozenset()
    # secret key of the digests that stand for call and utterance ids in logs (a phone number used as a call id
    # must not be found again by hashing every number); unset: unkeyed digests
    pii_log_key: str = ""
    # who may read GET /metrics (its counters span every tenant, e.g. all tenants' active calls).  Empty (the
    # default): public, for a Prometheus scraper on a private network.  Else comma-separated roles, e.g.
    # NUQI_METRICS_ROLES=supervisor,admin: a key with one of them, of the operator's tenant (NUQI_BOOTSTRAP_TENANT)
    metrics_roles: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("metrics_roles", mode="before")
    @classmethod
    def _roles(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = frozenset(x.strip() for x in v.split(",") if x.strip())
        unknown = set(v or ()) - set(ROLES)
        if unknown:
            raise ValueError(f"metrics_roles: unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        return v

    @field_validator("pii_keep_meta_fields", mode="before")
    @classmethod
    def _fields(cls, v: Any) -> Any:
        if isinstance(v, str):
            return frozenset(x.strip() for x in v.split(",") if x.strip())
        return v


class IngestSettings(BaseSettings):
    model_config = ENV
    max_chunk_seconds: float = 30.0  # longer chunks are refused with 413
    max_body_bytes: int = 8 * 1024 * 1024  # hard cap on one request body
    # how long a chunk waits for its missing predecessor (perhaps on another worker) before the hole is a gap
    gap_wait_s: float = 1.5
    # slow request bodies (app.security.limits): 408 when a body stalls this long between two reads, or, once
    # body_grace_s has passed, arrives at under body_min_rate bytes/s on average (a trickle holding a connection)
    body_idle_timeout_s: float = 15.0
    body_grace_s: float = 20.0
    body_min_rate: float = 32 * 1024


class TelephonySettings(BaseSettings):
    """Native telephony transports (README "Connect your telephony platform")."""

    model_config = ENV
    audiosocket_port: int | None = None  # Asterisk AudioSocket TCP listener; off when unset
    audiosocket_host: str = "0.0.0.0"
    audiosocket_idle_s: float = 10.0  # a connection silent this long is closed
    rtp_ports: str | None = None  # UDP port range for RTP legs, e.g. "20000-20999"; off when unset
    rtp_host: str = "0.0.0.0"
    rtp_public_host: str | None = None  # the address returned to the platform (default: the request's host)
    rtp_idle_timeout_s: float = 5.0  # an RTP leg with no packet for this long ends
    stream_window_s: float = 1.0  # analysis window of streamed audio (frames of any size are buffered to it)
    stream_jitter_s: float = 0.2  # how long out-of-order frames are waited for
    stream_max_ahead_s: float = 2.0  # a leg may not run further ahead of real time than this
    # a connection's hold on each leg it streams, renewed with every analysed window and released when it closes: a
    # reconnect waits for the dropped connection's release (at most this long: a worker that died) before it continues
    stream_leg_lease_s: float = 5.0
    stream_max_messages_per_s: float = 250.0  # messages per second on one stream connection (20 ms stereo = 50)
    twilio_track_roles: str = "inbound=customer,outbound=agent"
    audiohook_channel_roles: str = "external=customer,internal=agent"


class ServiceSettings(Settings):
    model_config = ENV
    GROUPS: ClassVar[dict[str, type[BaseSettings]]] = {
        **Settings.GROUPS, "store": StoreSettings, "security": SecuritySettings, "ingest": IngestSettings,
        "telephony": TelephonySettings,
    }

    # NoDecode: NUQI_STORE is the store URL (a plain string), routed to store.url below
    store: Annotated[StoreSettings, NoDecode] = Field(default_factory=StoreSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    telephony: TelephonySettings = Field(default_factory=TelephonySettings)

    # --- the server ----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_json: bool = True  # structured JSON logs (call id, no raw PII) from the nuqi.* loggers
    # uvicorn's plain-text line per request (method, path and query, status); the nuqi.* JSON logs do not
    # depend on it.  At 100 live calls that is ~120 lines/s; a site behind a proxy that logs requests can turn it off
    access_log: bool = True
    inference_threads: int = 2  # size of the thread pool that runs analysis off the event loop
    # a connection's request headers must be complete this long after it opened (or after the previous response
    # on a kept-alive connection), else it is closed (app.security.slowclients; uvicorn itself waits forever)
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5  # idle kept-alive connections are closed after this long (uvicorn timeout_keep_alive)
    # reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or CIDRs, "*" for
    # any; uvicorn forwarded_allow_ips).  Empty (the default): no proxy is trusted, not even loopback, so the client
    # address (invalid-key throttle, logs) is always the TCP peer.  RFC 7239 `Forwarded` is never read
    forwarded_allow_ips: str = ""

    @model_validator(mode="before")
    @classmethod
    def _store_url(cls, data: Any) -> Any:
        """``store="redis://…"`` (and the env NUQI_STORE) is the store URL."""
        if isinstance(data, dict) and isinstance(data.get("store"), str):
            data = {**data, "store": {"url": data["store"]}}
        return data


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    """The serving process's settings (``nuqi serve``, ``create_app()`` without arguments)."""
    return ServiceSettings()
