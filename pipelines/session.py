"""One call's analysis state and the verbs that advance it.

:class:`CallState` is plain, JSON-serialisable data (the store persists it between
chunks, so any worker can take the next chunk).  The ``process_*`` functions take a
state and an input, mutate the state and return the result to send back; they are
pure with respect to I/O and are run in the analysis thread pool.

chunk → decode (``pipelines.audio.decode``) → features (``pipelines.audio.stream``)
→ cues (baseline deltas, acoustic anger, text emotion, keywords) → fusion/stage
(``pipelines.fusion``) → alert decision.

``process_audio`` and ``process_transcript`` return a typed result (:class:`ChunkResult`,
:class:`UtteranceResult`): the JSON entry of the timeline / transcript and the alerts raised,
as :class:`~pipelines.fusion.CallAlert` objects.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from pipelines.audio.baseline import SpeakerBaseline
from pipelines.audio.decode import DecodedChunk, resample
from pipelines.audio.stream import SpeakerStream
from pipelines.fusion import CallAlert, CallAnalyzer, DecisionModel, WindowResult
from pipelines.registry import ModelRegistry
from pipelines.text.context import WINDOW, with_anger

logger = logging.getLogger("nuqi.session")


@dataclass
class RoleState:
    sample_rate: int
    stream: dict[str, Any]
    baseline: dict[str, Any]
    speech_s: float = 0.0
    chunks: int = 0


@dataclass
class CallState:
    last_seq: int = -1
    clock_s: float = 0.0  # call time at the end of the last chunk
    chunks: int = 0
    gaps: list[list[int]] = field(default_factory=list)  # [first_missing_seq, last_missing_seq]
    roles: dict[str, RoleState] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)  # CallAnalyzer.state_dict() (the decision layer)
    utterances: int = 0
    final_ids: list[str] = field(default_factory=list)  # storage keys of final utterances applied (idempotency)
    # streamed calls: the frame buffer (pipelines.ingest.CallFramer.state_dict()), so a leg can continue on
    # another worker; empty for calls fed whole chunks
    ingest: dict[str, Any] = field(default_factory=dict)
    # the last final transcript turns (either role) as the dialogue-context model keeps them: role, the utterance
    # model's log-probabilities, two numbers for their words (no text); see pipelines.text.context
    text_context: list[dict[str, Any]] = field(default_factory=list)
    # live ASR of the call (pipelines.asr.admission: status "on" | "off" | "skipped: capacity" | ...); empty until
    # the call's first analysed audio decides it
    asr: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, d: dict[str, Any] | None) -> "CallState":
        if not d:
            return cls()
        roles = {k: RoleState(**v) for k, v in d.get("roles", {}).items()}
        return cls(**{**d, "roles": roles})


@dataclass(frozen=True)
class RoleAnalysis:
    role: str
    features: dict[str, Any]
    delta: dict[str, Any] | None
    baseline: dict[str, Any]
    acoustic: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "delta": self.delta,
            "baseline": self.baseline,
            "anger": {"acoustic": self.acoustic},
        }


@dataclass
class ChunkResult:
    """One chunk's timeline entry (the JSON stored and sent back) and the alerts it raised."""

    entry: dict[str, Any]
    alerts: list[CallAlert] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The entry with its alerts inline (``alerts``: their JSON), as offline analysis reports it."""
        return {**self.entry, "alerts": [a.to_dict() for a in self.alerts]}


@dataclass
class UtteranceResult:
    """One transcript snippet's analysis entry and the alerts it raised (only final snippets raise any)."""

    entry: dict[str, Any]
    alerts: list[CallAlert] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry, "alerts": [a.to_dict() for a in self.alerts]}


def analyze_role(state: CallState, role: str, samples: np.ndarray, sample_rate: int,
                 models: ModelRegistry) -> RoleAnalysis:
    """Features → baseline delta → acoustic anger for one speaker's part of a chunk."""
    rs = state.roles.get(role)
    if rs is None:
        stream, baseline = SpeakerStream(sample_rate), SpeakerBaseline(models.settings.analysis.baseline_seconds)
        rs = RoleState(sample_rate=sample_rate, stream={}, baseline={})
        state.roles[role] = rs
    else:
        stream = SpeakerStream.from_state(rs.stream)
        baseline = SpeakerBaseline.from_state(rs.baseline)
        samples = resample(samples, sample_rate, rs.sample_rate)  # a speaker keeps the rate it started with
    feats = stream.process(samples)
    baseline.update(feats)
    delta = baseline.delta(feats)
    acoustic = models.acoustic.score(feats, delta) if models.acoustic is not None else None
    rs.stream, rs.baseline = stream.state_dict(), baseline.state_dict()
    rs.speech_s += feats.speech_s
    rs.chunks += 1
    return RoleAnalysis(
        role=role,
        features=feats.to_dict(),
        delta=delta.to_dict() if delta is not None else None,
        baseline={"ready": baseline.ready, "progress_s": round(baseline.progress_s, 2)},
        acoustic=None if acoustic is None else round(float(acoustic), 4),
    )


def _call(state: CallState, models: ModelRegistry) -> CallAnalyzer | None:
    return models.fusion.call_from_state(state.fusion) if models.fusion is not None else None


def process_audio(state: CallState, chunk: DecodedChunk, seq: int, models: ModelRegistry,
                  start_s: float | None = None) -> ChunkResult:
    """Advance ``state`` by one decoded chunk; its timeline entry and alerts."""
    if seq > state.last_seq + 1 and state.last_seq >= 0:
        state.gaps.append([state.last_seq + 1, seq - 1])
        logger.info("gap in chunk sequence: %d..%d missing", state.last_seq + 1, seq - 1)
    t_start = state.clock_s if start_s is None else float(start_s)
    t_end = t_start + chunk.duration_s
    call = _call(state, models)
    roles: dict[str, Any] = {}
    alerts: list[CallAlert] = []
    for role, samples in chunk.audio.items():
        analysis = analyze_role(state, role, samples, chunk.sample_rate, models)
        entry = analysis.to_dict()
        if call is not None:
            res = call.audio_window(role, t_start, t_end, acoustic_anger=analysis.acoustic, delta=analysis.delta,
                                    speech_s=float(analysis.features.get("speech_s") or 0.0),
                                    baseline_ready=bool(analysis.baseline.get("ready")))
            _merge_result(entry, res)
            alerts.extend(res.alerts)
        roles[role] = entry
    state.last_seq = seq
    state.clock_s = max(state.clock_s, t_end)
    state.chunks += 1
    out = {
        "seq": seq,
        "t_start": round(t_start, 3),
        "t_end": round(t_end, 3),
        "sample_rate": chunk.sample_rate,
        "input_rate": chunk.input_rate,
        "roles": roles,
    }
    if call is not None:
        state.fusion = call.state_dict()
        if call.assessed:
            out["stage"] = state.fusion["stage"]  # the call's stage after this chunk (all roles)
            out["anger"] = call.anger()  # the call's latest fused anger (customer; agent)
    return ChunkResult(out, alerts)


def _merge_result(entry: dict[str, Any], res: WindowResult) -> None:
    """Fold a decision-layer result into a role/utterance entry (``anger.fused``, ``fusion``, ``stage``, ...)."""
    if res.fused is not None:
        fused = res.fused.to_dict()
        if isinstance(entry.get("anger"), dict):  # audio window: anger = {"acoustic": ..., "fused": ...}
            entry["anger"]["fused"] = fused["fused"]
        else:  # utterance: "anger" is the text model's probability
            entry["anger_fused"] = fused["fused"]
        entry["fusion"] = fused
    entry.update(res.fields())


def public_view(state: CallState, fusion: DecisionModel | None = None) -> dict[str, Any]:
    """The caller-facing part of a call's state (no stream internals)."""
    roles = {}
    for role, rs in state.roles.items():
        base = rs.baseline or {}
        roles[role] = {
            "sample_rate": rs.sample_rate, "speech_s": round(rs.speech_s, 2), "chunks": rs.chunks,
            "baseline": {"ready": bool(base.get("ready")), "progress_s": round(float(base.get("progress_s", 0.0)), 2)},
        }
    view: dict[str, Any] = {
        "last_seq": state.last_seq, "clock_s": round(state.clock_s, 3), "chunks": state.chunks,
        "gaps": state.gaps, "utterances": state.utterances, "roles": roles,
    }
    if state.asr.get("status") is not None:
        view["asr"] = state.asr["status"]
    if fusion is not None:
        view.update(fusion.call_from_state(state.fusion).view())
    return view


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "max": None, "p90": None}
    arr = np.asarray(values, dtype=float)
    return {"mean": round(float(arr.mean()), 4), "max": round(float(arr.max()), 4),
            "p90": round(float(np.percentile(arr, 90)), 4)}


def summarize(state: CallState, timeline: list[dict[str, Any]], fusion: DecisionModel | None = None
              ) -> dict[str, Any]:
    """End-of-call summary from the state and the per-chunk timeline."""
    per_role: dict[str, Any] = {}
    for role, rs in state.roles.items():
        entries = [e["roles"][role] for e in timeline if role in e.get("roles", {})]
        anger = [x["anger"]["acoustic"] for x in entries if x.get("anger", {}).get("acoustic") is not None]
        rate = [x["features"]["speech_rate"] for x in entries if x["features"].get("speech_rate")]
        per_role[role] = {
            "speech_s": round(rs.speech_s, 2),
            "chunks": rs.chunks,
            "acoustic_anger": _stats(anger),
            "speech_rate": _stats(rate),
        }
    summary: dict[str, Any] = {
        "duration_s": round(state.clock_s, 3), "chunks": state.chunks, "gaps": state.gaps,
        "utterances": state.utterances, "roles": per_role,
    }
    if fusion is not None:
        summary.update(fusion.call_from_state(state.fusion).summary())
    return summary


@dataclass(frozen=True)
class TextAnalysis:
    text: str
    label: str | None
    probs: dict[str, float] | None
    anger: float | None
    truncated: bool
    keywords: list[dict[str, Any]]
    keyword_score: float
    keyword_stage_hint: int
    calming: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "probs": self.probs, "anger": self.anger, "truncated": self.truncated,
            "keywords": self.keywords, "keyword_score": self.keyword_score,
            "keyword_stage_hint": self.keyword_stage_hint, "calming": self.calming,
        }


def analyze_texts(texts: list[str], models: ModelRegistry, asr: bool = False) -> list[TextAnalysis]:
    """Text emotion (batched) + keyword lexicon for each text; ``asr=True``: recognised speech, whose keywords
    are also matched by sound and spoken digits (``KeywordLexicon.match(text, asr=True)``)."""
    emotions = models.text.predict(texts) if models.text is not None else [None] * len(texts)
    out = []
    for text, emo in zip(texts, emotions):
        lex = models.lexicon.match(text, asr=asr) if models.lexicon is not None else None
        hits = [asdict(h) for h in lex.hits] if lex is not None else []
        out.append(TextAnalysis(
            text=text,
            label=emo.label if emo else None,
            probs={k: round(float(v), 4) for k, v in emo.probs.items()} if emo else None,
            anger=round(float(emo.anger), 4) if emo else None,
            truncated=bool(emo.truncated) if emo else False,
            keywords=hits,
            keyword_score=round(float(lex.score), 4) if lex else 0.0,
            keyword_stage_hint=int(lex.stage_hint) if lex else 0,
            calming=bool(lex.calming) if lex else False,
        ))
    return out


def _with_context(state: CallState, role: str, analysis: TextAnalysis, final: bool, models: ModelRegistry
                  ) -> tuple[TextAnalysis, dict[str, Any]]:
    """Dialogue-context mode: when earlier final turns exist, the turn's anger is the context model's
    (:mod:`pipelines.text.context`) and the six probabilities are re-weighted to carry it; ``text_mode`` says
    which mode scored the turn.  A final turn is remembered for the next ones (one utterance-model call per
    turn: the earlier turns' outputs come from ``state.text_context``)."""
    model = models.text_context
    if model is None or analysis.probs is None:
        return analysis, {"text_mode": "utterance" if analysis.probs is not None else None}
    if state.text_context:
        res = model.score(role, analysis.text, analysis.probs, state.text_context)
        probs = {k: round(v, 4) for k, v in with_anger(analysis.probs, res.anger).items()}
        extra = {"text_mode": "context",
                 "context": {"turns": res.turns, "anger": round(res.anger, 4), "angry": bool(res.angry),
                             "anger_utterance": analysis.anger}}
        analysis = replace(analysis, probs=probs, anger=probs["angry"], label=max(probs, key=probs.get))
        memory = res.memory
    else:
        extra = {"text_mode": "utterance"}
        memory = model.memory(role, analysis.text, analysis.probs) if final else None
    if final:
        state.text_context = [*state.text_context, memory][-WINDOW:]
    return analysis, extra


def process_transcript(state: CallState, role: str, text: str, start: float | None, end: float | None,
                       final: bool, models: ModelRegistry, asr: bool = False) -> UtteranceResult:
    """Analyse one transcript snippet; only final snippets advance the call's escalation state.  ``asr=True``
    for text from the built-in recogniser (keywords also matched by sound)."""
    analysis = analyze_texts([text], models, asr=asr)[0]
    analysis, context = _with_context(state, role, analysis, final, models)
    entry: dict[str, Any] = {"role": role, "text": text, "start": start, "end": end, "final": final,
                             **analysis.to_dict(), **context}
    if not final:
        return UtteranceResult(entry)
    state.utterances += 1
    t_end = end if end is not None else state.clock_s
    t_start = start if start is not None else t_end
    call = _call(state, models)
    if call is None:
        return UtteranceResult(entry)
    res = call.text_turn(role, t_start, t_end, text=analysis.text, text_probs=analysis.probs,
                         text_anger=analysis.anger, text_calibrated=entry.get("text_mode") == "context",
                         keyword_hits=analysis.keywords,
                         keyword_score=analysis.keyword_score, keyword_stage_hint=analysis.keyword_stage_hint,
                         calming=analysis.calming)
    _merge_result(entry, res)
    state.fusion = call.state_dict()
    return UtteranceResult(entry, res.alerts)
