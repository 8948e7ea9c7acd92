"""Request and response bodies of the JSON API (pydantic models; the OpenAPI document shows them).

Response models name the documented fields and allow extra ones (``extra="allow"``): the analysis
payloads (per-role features, fusion details, explanations) are open-ended and grow with the models, and
a field a service adds must reach the client rather than be dropped.  Routes use
``response_model_exclude_unset=True`` where a service leaves optional keys out, so the JSON is exactly
what the service returned.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.security.roles import Role
from app.store.codec import dumps

CALL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
KEY_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TEXTS = 256
MAX_CHARS = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BATCH_MAX_PATHS = 1000  # server-side paths per batch job (app.services.batch.MAX_PATHS checks it again)


def check_text(value: str, where: str, *, control: bool = False) -> str:
    """``value`` must be encodable text (no lone surrogate) and, with ``control``, free of NUL and other
    control characters (paths, names); raises ``ValueError`` (→ 422) naming ``where``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} contains a lone surrogate (not valid Unicode text)") from None
    if control and _CONTROL.search(value):
        raise ValueError(f"{where} contains a NUL byte or another control character")
    return value


class Open(BaseModel):
    """A response object whose named fields are documented and whose other fields pass through."""

    model_config = ConfigDict(extra="allow")


# =========================================================================== requests
class CallMeta(BaseModel):
    agent_id: str | None = Field(None, max_length=128, description="agent bound to this call (alerts go to them)")
    meta: dict[str, Any] = Field(default_factory=dict, description="free-form call metadata (queue, skill, ...)")
    asr: Literal["on", "off"] | None = Field(None, description="live ASR of this call, before its first audio "
                                                               "(default: the service's NUQI_LIVE_ASR)")

    @field_validator("meta")
    @classmethod
    def _storable(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:  # what the store writes (e.g. integers beyond 64 bits are not)
            dumps(v)
        except TypeError as exc:
            raise ValueError(f"meta cannot be stored: {exc}") from None
        return v


class TextBatch(BaseModel):
    texts: Annotated[list[str], Field(min_length=1, description=f"1..{MAX_TEXTS} texts, each ≤ {MAX_CHARS} characters")]

    @field_validator("texts")
    @classmethod
    def _unicode(cls, v: list[str]) -> list[str]:  # bodies the JSON guard does not see (no content type)
        for i, t in enumerate(v):
            check_text(t, f"texts[{i}]")
        return v


class TranscriptIn(BaseModel):
    """One transcript snippet of a live call (HTTP body, or a WebSocket text frame ``{"type": "transcript", ...}``)."""

    role: Literal["customer", "agent"]
    text: Annotated[str, Field(max_length=MAX_CHARS)]
    start: Annotated[float | None, Field(ge=0, le=86400)] = None
    end: Annotated[float | None, Field(ge=0, le=86400)] = None
    final: bool = True
    id: Annotated[str | None, Field(max_length=128, description="utterance id; interim snippets with the same id "
                                                             "are superseded by the final one")] = None

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, v: float | None, info):  # type: ignore[no-untyped-def]
        start = info.data.get("start")
        if v is not None and start is not None and v < start:
            raise ValueError("end must not be before start")
        return v


class AckIn(BaseModel):
    by: str | None = Field(None, max_length=128, description="who acknowledged (agent id)")


class KeyIn(BaseModel):
    role: Role
    tenant: Annotated[str | None, Field(pattern=TENANT, description="default: the caller's tenant")] = None
    agent_id: Annotated[str | None, Field(max_length=128, description="required for role 'agent'")] = None
    name: Annotated[str, Field(max_length=128, description="what the key is for")] = ""
    rate_per_s: Annotated[float | None, Field(gt=0, le=100_000, description="token-bucket refill per second")] = None
    burst: Annotated[int | None, Field(ge=1, le=1_000_000, description="token-bucket size")] = None


class BatchOpts(BaseModel):
    channel_map: Annotated[str | None, Field(max_length=64, description="e.g. agent,customer (stereo default)")] = None
    asr: Annotated[Literal["auto", "on", "off"],
                   Field(description="ASR for calls without a transcript sidecar")] = "auto"


class BatchIn(BatchOpts):
    paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]],
                     Field(min_length=1, max_length=BATCH_MAX_PATHS,
                           description="server-side audio files or folders (inside batch_input_roots)")]

    @field_validator("paths")
    @classmethod
    def _plain_paths(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            check_text(p, f"paths[{i}]", control=True)
        return v


# =========================================================================== health
class Health(BaseModel):
    status: Literal["ok"]


class ComponentHealth(Open):
    loaded: bool
    load_seconds: float | None = None
    error: str | None = None


class StoreHealth(Open):
    backend: str
    ok: bool
    error: str | None = None
    data_lost_at: float | None = Field(None, description="when the store was found to have lost its data (Redis "
                                                         "restarted without persistence); null: never")


class AsrHealth(Open):
    mode: str = Field(description="NUQI_LIVE_ASR: auto | on | off")
    available: bool = Field(description="the recogniser processes are running (calls can get live ASR)")
    error: str | None = Field(None, description="why live ASR is unavailable")
    workers: int = 0
    capacity: int = Field(0, description="calls live ASR takes at once at the current real-time factor")
    active: int = Field(0, description="calls with live ASR now")


class Readiness(Open):
    ready: bool
    models: dict[str, ComponentHealth]
    store: StoreHealth
    asr: AsrHealth | None = Field(None, description="live ASR (its absence does not make the service unready)")
    reasons: list[str] = Field(description="why the service is not ready (empty when it is)")
    warnings: list[str] = Field(default_factory=list, description="ready, but something the operator must know")


# =========================================================================== admin
class KeyOut(Open):
    key_id: str
    tenant: str
    role: str
    agent_id: str | None = None
    name: str = ""
    created_at: float
    revoked_at: float | None = None
    active: bool
    rate_per_s: float | None = Field(None, description="null: the service default")
    burst: int | None = Field(None, description="null: the service default")


class KeyCreated(KeyOut):
    key: str = Field(description="the raw API key; shown once, never stored")


class KeyList(BaseModel):
    keys: list[KeyOut]


# =========================================================================== call analysis
class Transition(Open):
    level: int
    name: str
    at: float
    reason: str | None = None


class Stage(Open):
    """Where the call stands: escalation level (0 平静 … 6), its name, since when (call seconds), history."""

    level: int = 0
    name: str = ""
    since: float | None = None
    history: list[Transition] = Field(default_factory=list)


class Baseline(Open):
    ready: bool
    progress_s: float | None = None


class RoleAnger(Open):
    acoustic: float | None = Field(None, description="acoustic anger in [0, 1] (null without an acoustic model)")
    fused: float | None = Field(None, description="fused anger in [0, 1] once this window was fused")


class RoleWindow(Open):
    """One speaker's part of an audio chunk: features, deltas vs the opening baseline, anger, assessment."""

    features: dict[str, Any]
    delta: dict[str, Any] | None = Field(None, description="vs the speaker's opening baseline; null until ready")
    baseline: Baseline | None = None
    anger: RoleAnger | None = None
    stage: Stage | None = None
    fusion: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    guidance: Any = None


class Alert(Open):
    """A stored alert: record fields plus the decision's payload (stage, explanation, guidance, cues)."""

    id: int
    call_id: str
    tenant: str
    agent_id: str | None = None
    level: int
    kind: str
    created_at: float
    acked: bool
    acked_at: float | None = None
    acked_by: str | None = None
    stage_name: str | None = None
    severity: str | None = None
    at: float | None = None
    anger: float | None = None
    explanation: Any = None
    guidance: list[str] | None = None
    cues: list[dict[str, Any]] | None = None
    stage: Stage | None = None


class CallAnger(Open):
    fused: float | None = Field(None, description="latest fused anger of the customer")
    agent: float | None = Field(None, description="latest fused anger of the agent")


class StreamWindow(Open):
    """One leg's analysis window cut from streamed frames."""

    role: str
    index: int = Field(description="window k covers media time [k*W, (k+1)*W)")
    t_start: float
    t_end: float
    lost_s: float = Field(description="silence standing in for lost frames in this window")
    pad_s: float = Field(description="silence before the leg's first frame")
    final: bool = Field(description="the short last window of a leg")
    wall_s: float | None = Field(None, description="wall-clock time the window's last frame arrived")


class StreamGap(Open):
    role: str
    reason: str = Field(description="loss (sequence gap), timestamp (a jump in media time), segment, jump, ...")
    t_start: float
    duration_s: float
    seq: list[int] | None = Field(None, description="first and last missing sequence numbers")


class ChunkEntry(Open):
    """A chunk's timeline entry."""

    seq: int
    t_start: float
    t_end: float
    sample_rate: int | None = None
    input_rate: int | None = None
    roles: dict[str, RoleWindow]
    stage: Stage | None = Field(None, description="the call's stage after this chunk (all roles)")
    anger: CallAnger | None = Field(None, description="the call's latest fused anger after this chunk")
    wall_s: float | None = Field(None, description="wall-clock time (Unix seconds) of the analysis; t_start/t_end are "
                                                   "media time, seconds since the call started")
    windows: list[StreamWindow] | None = Field(None, description="streamed audio: the framer windows analysed")


class ChunkResult(ChunkEntry):
    call_id: str
    duplicate: bool = Field(description="true: this seq was processed before; the stored result is returned")
    alerts: list[Alert] = Field(description="alerts raised (or re-delivered) by this chunk")
    gaps: list[list[int]] | None = Field(None, description="missing seq ranges [first, last] of the call so far")


class StreamAnalysis(ChunkResult):
    type: Literal["analysis"] = "analysis"
    lost: list[StreamGap] = Field(default_factory=list, description="lost audio (now silence) reported since the "
                                                                    "last analysis")


class FramesResult(Open):
    """``POST .../audio`` of a frame: what it completed."""

    call_id: str
    completed: list[StreamAnalysis] = Field(description="one analysis per window the frame completed (often none)")
    buffered_s: dict[str, float] = Field(description="audio each leg buffers toward its next window")
    lost: list[StreamGap] = Field(description="lost audio not yet part of a completed window")
    duplicate: bool = Field(description="true: this frame's seq was received before; nothing changed")
    late: int = Field(0, description="frames of this leg that came after they were declared lost")
    wall_s: float


class StreamAllocation(BaseModel):
    """An AudioSocket session or an RTP port bound to a call leg."""

    call_id: str
    role: str
    transport: Literal["audiosocket", "rtp"]
    uuid: str | None = Field(None, description="AudioSocket: the UUID to pass to AudioSocket()")
    host: str | None = Field(None, description="where to send the media")
    port: int | None = None
    codec: str | None = None
    payload_type: int | None = Field(None, description="RTP payload type expected (null: any dynamic type)")
    idle_timeout_s: float | None = None


class RoleStateView(Open):
    sample_rate: int | None = None
    speech_s: float | None = None
    chunks: int | None = None
    baseline: Baseline | None = None


class CallStateView(Open):
    last_seq: int
    clock_s: float
    chunks: int
    gaps: list[list[int]]
    utterances: int
    roles: dict[str, RoleStateView]
    stage: Stage | None = None
    anger: CallAnger | None = None
    trend: list[list[float]] | None = Field(None, description="[call seconds, fused customer anger] points")
    asr: str | None = Field(None, description='live ASR of the call: "on", "off", "skipped: capacity", '
                                              '"off: platform transcripts" or "unavailable" (absent before audio)')


class CallSummary(Open):
    duration_s: float | None = None
    chunks: int | None = None
    gaps: list[list[int]] | None = None
    utterances: int | None = None
    roles: dict[str, dict[str, Any]] | None = None
    peak_stage: int | None = None
    peak_stage_name: str | None = None
    stage: Stage | None = None
    complaint: dict[str, Any] | None = None
    time_to_first_escalation_s: float | None = None
    max_anger_customer: float | None = None
    agent_max_anger: float | None = None
    anger_seconds_customer: float | None = None
    alert_count: int | None = None


class CallInfo(Open):
    call_id: str
    agent_id: str | None = None
    status: str
    meta: dict[str, Any] = Field(default_factory=dict)
    asr: str | None = Field(None, description="live ASR: the status once decided, or the override requested")


class CallView(CallInfo):
    created_at: float
    updated_at: float
    state: CallStateView
    summary: CallSummary | None = None
    timeline: list[ChunkEntry] | None = Field(None, description="per-chunk entries (absent with timeline=false)")
    transcripts: list[dict[str, Any]] | None = Field(None, description="utterances (absent with timeline=false)")


class CallEnded(Open):
    call_id: str
    status: Literal["ended"]
    summary: CallSummary


class TextResult(Open):
    label: str | None = None
    probs: dict[str, float] | None = None
    anger: float | None = None
    truncated: bool = False
    keywords: list[dict[str, Any]] = Field(default_factory=list)
    keyword_score: float = 0.0
    keyword_stage_hint: int = 0
    calming: bool = False


class TextResults(BaseModel):
    results: list[TextResult]


class TextContext(BaseModel):
    """Dialogue-context scoring of a turn (``models/text-context``): the turn read with the ones before it."""

    turns: int = Field(description="earlier turns of the call the score used")
    anger: float = Field(description="calibrated P(anger) given the turn and its context (= the utterance's anger)")
    angry: bool = Field(description="anger is at or above the model's F1-optimal threshold")
    anger_utterance: float | None = Field(None, description="the single-utterance model's anger for the same text")


class Utterance(TextResult):
    """A transcript snippet's analysis (text with personal data redacted) and, when final, its assessment."""

    text_mode: Literal["utterance", "context"] | None = Field(
        None, description="which text model scored the turn: 'context' (with the call's earlier turns) when "
                          "earlier final turns exist, else 'utterance'")
    context: TextContext | None = Field(None, description="present in context mode")

    role: str
    text: str
    start: float | None = None
    end: float | None = None
    final: bool
    key: str | None = Field(None, description="the store's key of the utterance (a digest of its id)")
    id: str | None = Field(None, description="the utterance id sent (personal data in it masked)")
    source: str | None = Field(None, description='"platform" (sent by the client) or "asr" (built-in recogniser)')
    confidence: float | None = Field(None, description="the recogniser's confidence, 0..1 (source asr)")
    anger_fused: float | None = None
    stage: Stage | None = None


class TranscriptResult(Open):
    """The chunk response's top-level shape (``stage``, ``anger.fused``, ``alerts``) plus the snippet's
    analysis (``utterance``) and the call's live view (``state``)."""

    call_id: str
    duplicate: bool = Field(description="true: a final snippet with this id was applied before (a retry); "
                                        "nothing changed and the stored utterance is returned")
    stage: Stage | None = Field(None, description="the call's stage after this snippet (null before any analysis)")
    anger: CallAnger | None = Field(None, description="the call's latest fused anger after this snippet")
    alerts: list[Alert] = Field(description="alerts raised (or re-delivered) by this snippet")
    utterance: Utterance
    state: CallStateView


# =========================================================================== stage scale (pages)
class StageInfo(BaseModel):
    level: int = Field(description="0 平静 … 6 投诉升级")
    name: str
    severity: str | None = Field(None, description="severity of an alert at this stage (null: stage 0)")


class AngerBand(BaseModel):
    start: float = Field(alias="from", description="fused anger from (inclusive)")
    end: float = Field(alias="to", description="fused anger to (exclusive; the last band's end is the scale's end)")
    level: int = Field(description="the stage this much anger supports (colour of the band)")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class StageScale(BaseModel):
    """The escalation stages and the fused-anger scale of the stage rules (``pipelines/fusion/rules.yaml``),
    so that pages show the names and thresholds the service uses."""

    stages: list[StageInfo]
    rise: dict[int, float] = Field(description="fused anger from which a window supports stage 1..3")
    gauge_max: float = Field(description="end of the anger gauge (anger above it is drawn at the end)")
    bands: list[AngerBand]


# =========================================================================== alerts, board
class AlertList(BaseModel):
    alerts: list[Alert]
    cursor: int = Field(description="pass as `after` to get the next alerts")


class BoardCall(Open):
    call_id: str
    agent_id: str | None = None
    status: str
    updated_at: float
    clock_s: float
    stage: Stage
    anger: CallAnger
    trend: list[list[float]]
    unacked_alerts: int | None = None


class Board(BaseModel):
    calls: list[BoardCall]
    count: int


# =========================================================================== batch
class BatchProgress(Open):
    total: int = 0
    done: int = 0
    scored: int | None = None
    skipped: int | None = None
    failed: int | None = None
    eta_s: float | None = None


class BatchReports(Open):
    index_html: str | None = None
    summary_csv: str | None = None


class BatchError(Open):
    code: str
    message: str


class BatchJob(Open):
    id: str
    status: str = Field(description="queued | running | done | failed | interrupted")
    source: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    options: dict[str, Any] | None = None
    progress: BatchProgress
    error: BatchError | None = Field(None, description="why the job failed")
    notes: list[str] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)
    fraction_done: float
    results_total: int
    results: list[dict[str, Any]] = Field(description="one row per call (summary.csv's columns)")
    reports: BatchReports


class BatchDeleted(BaseModel):
    id: str
    deleted: bool
