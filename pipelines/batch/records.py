"""The records of QA batch scoring, shared by the runner, the scorer, the Ray runner and the reports:
a job (one file), the score options, a scored call (one ``summary.csv`` row), a worker's output, progress."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ASR_MODES = ("auto", "on", "off")

# summary.csv columns: the list, then three extras (call page name, transcript source, reason)
SUMMARY_COLUMNS = (
    "file", "duration_s", "peak_stage", "peak_stage_name", "time_to_first_escalation_s", "max_anger_customer",
    "anger_seconds_customer", "complaint_type", "agent_max_anger", "talk_ratio", "silence_pct", "overtalk_pct",
    "speech_rate_customer", "speech_rate_agent", "alert_count", "status", "error",
    "call", "transcript_source", "complaint_reason",
)


@dataclass
class ScoredCall:
    """One row of ``summary.csv``."""

    file: str
    duration_s: float | None = None
    peak_stage: int | None = None
    peak_stage_name: str | None = None
    time_to_first_escalation_s: float | None = None
    max_anger_customer: float | None = None
    anger_seconds_customer: float | None = None
    complaint_type: str | None = None
    agent_max_anger: float | None = None
    talk_ratio: float | None = None
    silence_pct: float | None = None
    overtalk_pct: float | None = None
    speech_rate_customer: float | None = None
    speech_rate_agent: float | None = None
    alert_count: int | None = None
    status: str = "ok"  # "ok" | "error"
    error: str = ""
    call: str = ""
    transcript_source: str = ""  # "sidecar:<name>" | "asr" | "none"
    complaint_reason: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SUMMARY_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ScoredCall":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def anger_key(self) -> tuple[float, float, float]:
        """Sort key, larger = angrier: peak stage, then max customer anger, then anger seconds."""
        return (float(self.peak_stage or 0), float(self.max_anger_customer or 0.0),
                float(self.anger_seconds_customer or 0.0))


@dataclass(frozen=True)
class CallJob:
    """One file to score.  ``path`` is where the worker reads it; ``display`` is what reports show."""

    path: str
    name: str  # unique call name in the batch: OUT/calls/<name>.json
    sidecar: str | None = None
    size: int = 0
    display: str = ""

    @property
    def file(self) -> str:
        return self.display or self.path


@dataclass(frozen=True)
class ScoreOptions:
    channel_map: str | None = None
    asr: str = "auto"  # auto | on | off (auto: ASR for calls without a sidecar when the model is assembled)
    asr_model_dir: str | None = None
    html: bool = True


@dataclass
class CallOutput:
    """What a worker returns for one call; the driver writes the files."""

    record: ScoredCall
    json_text: str | None = None  # None when the call failed
    html_text: str | None = None
    seconds: float = 0.0  # wall time of the scoring
    cpu_seconds: float = 0.0  # CPU time of the scoring process meanwhile (all its threads)


@dataclass
class BatchProgress:
    total: int  # calls in the batch
    done: int = 0  # scored now or earlier (skipped), including errors
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0  # audio seconds scored in this run
    busy_s: float = 0.0  # sum of the workers' wall time spent scoring (one call at a time per worker)
    cpu_s: float = 0.0  # sum of the workers' CPU time spent scoring: audio_s / cpu_s = × real time per core
    elapsed_s: float = 0.0
    eta_s: float | None = None
    last: str | None = None  # file of the last finished call

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elapsed_s"] = round(self.elapsed_s, 2)
        d["audio_s"] = round(self.audio_s, 2)
        d["busy_s"] = round(self.busy_s, 2)
        d["cpu_s"] = round(self.cpu_s, 2)
        d["x_realtime_per_worker"] = round(self.audio_s / self.busy_s, 1) if self.busy_s > 0 else None
        d["x_realtime_per_cpu_s"] = round(self.audio_s / self.cpu_s, 1) if self.cpu_s > 0 else None
        d["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        d["x_realtime"] = round(self.audio_s / self.elapsed_s, 1) if self.elapsed_s > 0 else None
        return d


@dataclass
class BatchResult:
    out_dir: Path
    records: list[ScoredCall]
    progress: BatchProgress
    summary_csv: Path
    index_html: Path
    notes: list[str] = field(default_factory=list)
