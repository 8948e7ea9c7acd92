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

    # --- store -------------------------------------------------------------
    # "sqlite" (embedded default, file under state_dir) or "sqlite:///path.db" or "redis://host:port/db"
    store: str = "sqlite"

    # --- audio ingest --------------------------------------------------------
    max_chunk_seconds: float = 30.0  # longer chunks are refused with 413
    max_body_bytes: int = 8 * 1024 * 1024  # hard cap on one request body
    supported_rates: tuple[int, ...] = (8000, 16000)  # analysis rates; others are resampled to the nearest
    baseline_seconds: float = 15.0  # speech time that forms a speaker's opening baseline

    # --- inference -----------------------------------------------------------
    inference_threads: int = 2  # size of the thread pool that runs analysis off the event loop

    # --- service -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
