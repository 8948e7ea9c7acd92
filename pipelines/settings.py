"""The one configuration object of nuqi (environment prefix ``NUQI_``).

Every tunable of the service, the CLI and the training scripts lives here.  To add
one, add a field with a default and a one-line comment; read it through
:func:`get_settings` (cached) rather than instantiating ``Settings`` ad hoc.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NUQI_", env_file=None, extra="ignore")

    # --- paths -------------------------------------------------------------
    # where the labelled training / dev data lives (read-only, never copied into the repo)
    data_dir: Path = Field(default=REPO_ROOT.parent / "shared" / "data")
    # trained artifacts shipped with the repo
    models_dir: Path = Field(default=REPO_ROOT / "models")
    # runtime state (SQLite file, batch outputs) of the embedded default store
    state_dir: Path = Field(default=REPO_ROOT / "data")
    # assembled faster-whisper base model dir for QA batch ASR; None = state_dir / "models" / "whisper-base"
    asr_model_dir: Path | None = None

    # --- QA batch scoring (nuqi score, POST /v1/batch) -----------------------
    # Ray cluster for batch scoring ("ray://host:10001", "auto" or "local"); None = local process pool, no Ray import
    ray_address: str | None = None
    batch_workers: int = 1  # worker processes of a POST /v1/batch job (1 = the service's own models, in a thread)
    # server-side folders POST /v1/batch may read; paths outside them are refused (uploads are always allowed)
    batch_input_roots: tuple[Path, ...] = (REPO_ROOT / "sample_audio",)
    batch_max_upload_bytes: int = 2 * 1024**3  # total bytes of the files uploaded to one POST /v1/batch

    # --- store -------------------------------------------------------------
    # "sqlite" (embedded default, file under state_dir) or "sqlite:///path.db" or "redis://host:port/db"
    store: str = "sqlite"
    redis_prefix: str = "nuqi"  # key prefix in Redis (several deployments may share one Redis db)
    redis_connect_timeout_s: float = 1.0  # fail fast (503) when Redis cannot be reached
    redis_socket_timeout_s: float = 2.0  # per-command timeout
    redis_max_connections: int = 64  # connection pool size per worker process
    # after a call ends, its per-chunk timeline and transcripts are deleted after this many seconds (its record,
    # summary and alerts stay); ~230 KB per 75-s call, which Redis holds in memory. 0 = keep them forever
    ended_call_detail_ttl_s: float = 24 * 3600.0

    # --- security (app/security) ---------------------------------------------
    # False = open API (every request acts as admin of tenant "default"; `nuqi serve` warns loudly)
    auth_enabled: bool = False
    # optional admin key created at start-up (env NUQI_BOOTSTRAP_ADMIN_KEY); use it to create the other keys
    bootstrap_admin_key: str | None = None
    bootstrap_tenant: str = "default"  # tenant of the bootstrap admin key
    rate_limit_per_s: float = 50.0  # default token-bucket refill per API key (a key may carry its own)
    rate_limit_burst: int = 100  # default bucket size per API key
    key_cache_s: float = 2.0  # how long a worker caches a key lookup (revocation reaches other workers within it)
    log_json: bool = True  # structured JSON logs (call id, no raw PII) from the nuqi.* loggers

    # --- audio ingest --------------------------------------------------------
    max_chunk_seconds: float = 30.0  # longer chunks are refused with 413
    max_body_bytes: int = 8 * 1024 * 1024  # hard cap on one request body
    # how long a chunk waits for its missing predecessor (perhaps on another worker) before the hole is a gap
    gap_wait_s: float = 1.5
    baseline_seconds: float = 15.0  # speech time that forms a speaker's opening baseline

    # --- inference -----------------------------------------------------------
    inference_threads: int = 2  # size of the thread pool that runs analysis off the event loop

    # --- service -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # uvicorn's plain-text line per request (method, path and query, status); the nuqi.* JSON logs do not
    # depend on it.  At 100 live calls that is ~120 lines/s; a site behind a proxy that logs requests can turn it off
    access_log: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
