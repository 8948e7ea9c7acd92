"""Configuration of nuqi's analysis code, the CLI and the training scripts (environment prefix ``NUQI_``).

Settings come in groups, each a pydantic-settings class that reads its own flat ``NUQI_*`` variables, so
``NUQI_BASELINE_SECONDS=20`` sets ``settings.analysis.baseline_seconds``.  The service's one object,
:class:`app.settings.ServiceSettings`, extends :class:`Settings` with the service-only groups (store,
security, ingest, telephony).  Library code never reads settings by itself: whoever builds an object passes the
values down (``ModelRegistry.load(settings)`` → models; the service's ``Runtime`` → services).

To add a setting: a field with a default and a one-line comment in the group it belongs to.  Keyword arguments
may be flat (``Settings(baseline_seconds=20)``, named like the environment variables) and are routed into their
group; :meth:`GroupedSettings.updated` returns a changed copy the same way.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = SettingsConfigDict(env_prefix="NUQI_", env_file=None, extra="ignore", populate_by_name=True)


class AnalysisSettings(BaseSettings):
    model_config = ENV
    # speech time after which a speaker's opening baseline freezes (deltas come after 5 s and refine until then);
    # 20 s is what the acoustic model was fitted and evaluated with (models/acoustic-anger/MODEL_CARD.md)
    baseline_seconds: float = 20.0


class ModelSettings(BaseSettings):
    model_config = ENV
    # assembled faster-whisper base model dir for ASR; None = state_dir / "models" / "whisper-base"
    asr_model_dir: Path | None = None


class BatchSettings(BaseSettings):
    """QA batch scoring (``nuqi score``, ``POST /v1/batch``)."""

    model_config = ENV
    # Ray cluster for batch scoring ("ray://host:10001", "auto" or "local"); None = local process pool, no Ray import
    ray_address: str | None = None
    batch_workers: int = 1  # worker processes of a POST /v1/batch job (1 = the service's own models, in a thread)
    # server-side folders POST /v1/batch may read; paths outside them are refused (uploads are always allowed)
    batch_input_roots: tuple[Path, ...] = (REPO_ROOT / "sample_audio",)
    batch_max_upload_bytes: int = 2 * 1024**3  # total bytes of the files uploaded to one POST /v1/batch


class AsrSettings(BaseSettings):
    """Built-in speech recognition: live ASR of calls without transcripts, and its decoding options.

    Decoding options left at None use the engine's tuned defaults (pipelines/asr/engine.py, DecodeConfig),
    which ``nuqi transcribe``, ``nuqi score`` and live ASR share.
    """

    model_config = ENV
    # auto = calls that have sent no transcript of their own get live ASR (within capacity); on = every call; off
    live_asr: Literal["auto", "on", "off"] = "auto"
    asr_workers: int = Field(default=1, ge=1)  # recogniser processes (one core each) for live ASR
    asr_agent_leg: bool = False  # also transcribe the agent's leg (doubles the cost per call)
    # decode seconds per audio second of one worker, used for admission until the workers have measured it (it then
    # follows their decodes).  0.8, not the 0.31-0.44 measured alone: next to 100 analysed calls on the shared
    # 2-core host the 7-8 calls planned at 0.4 fell behind and 4 kept up (bench/RESULTS_asr.md)
    asr_rtf: float = Field(default=0.8, gt=0)
    asr_headroom: float = Field(default=0.8, gt=0, le=1)  # share of the workers' time admission plans for
    # niceness of the recogniser processes: on a busy host the audio analysis (and its alerts) gets the CPU first
    asr_nice: int = Field(default=10, ge=0, le=19)
    asr_end_wait_s: float = Field(default=10.0, ge=0)  # ending a call waits this long for its last transcripts
    asr_beam_size: int | None = Field(default=None, ge=1)  # None = engine default
    asr_initial_prompt: str | None = None  # None = engine default; "" = no prompt
    asr_hotwords: bool | None = None  # the keyword lexicon's terms as decoder hotwords; None = engine default


class GroupedSettings(BaseSettings):
    """Settings made of groups; routes flat keyword arguments (``baseline_seconds=20``) into their group."""

    GROUPS: ClassVar[dict[str, type[BaseSettings]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _route_flat_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for group, model in cls.GROUPS.items():
            names = set(model.model_fields) | {f.validation_alias for f in model.model_fields.values()
                                                if isinstance(f.validation_alias, str)}
            picked = {k: data.pop(k) for k in list(data) if k in names and k != group}
            given = data.get(group)
            if isinstance(given, BaseSettings):
                given = given.model_dump()
            if isinstance(given, dict):
                picked = {**given, **picked}
            if picked or not isinstance(data.get(group), BaseSettings):
                data[group] = model(**picked)  # the group reads its other fields from the environment
        return data

    def updated(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (flat names or whole groups), validated like the constructor."""
        return type(self)(**{**self.model_dump(), **changes})


class Settings(GroupedSettings):
    model_config = ENV
    GROUPS: ClassVar[dict[str, type[BaseSettings]]] = {
        "analysis": AnalysisSettings, "models": ModelSettings, "batch": BatchSettings, "asr": AsrSettings,
    }

    # --- paths -------------------------------------------------------------
    # where the labelled training / dev data lives (read-only, never copied into the repo)
    data_dir: Path = Field(default=REPO_ROOT.parent / "shared" / "data")
    # trained artifacts shipped with the repo
    models_dir: Path = Field(default=REPO_ROOT / "models")
    # runtime state (SQLite file, batch outputs, the assembled ASR model) of the embedded default store
    state_dir: Path = Field(default=REPO_ROOT / "data")

    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, for command-line entry points and scripts (library code takes them as arguments)."""
    return Settings()
