"""Conversation metrics of one call from its per-chunk timeline.

Each timeline entry (one chunk, normally 1 s) carries per role ``features.speech_s`` (VAD speech
time in the chunk) and ``features.syllables``.  Within a chunk only the totals are known, not
where the speech lies, so:

* **overtalk** of a chunk = ``max(0, customer + agent − chunk)``: the speech that cannot fit into
  the chunk without both talking at once (a lower bound of the true overlap; exact when both talk
  through the whole chunk, 0 for clean turn-taking);
* **silence** of a chunk = ``max(0, chunk − customer − agent)``: the time left when the two are
  assumed to overlap as little as possible (the complement of the same assumption);
* **talk ratio** = customer speech / agent speech over the call (> 1: the customer talks more);
* **speech rate** of a role = detected syllable nuclei / VAD speech time over the call
  (syllables per second of speaking, pauses excluded).

Mono recordings have one role: silence is that role's non-speech time, talk ratio and overtalk
are ``None``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MIN_RATE_SPEECH_S = 1.0  # less speech than this over the call gives no speech rate


@dataclass(frozen=True)
class CallMetrics:
    duration_s: float
    speech_s: dict[str, float]  # per role, whole call
    talk_ratio: float | None  # customer speech / agent speech
    silence_pct: float | None  # % of the call where nobody speaks
    overtalk_pct: float | None  # % of the call where both speak (lower bound, see module doc)
    speech_rate: dict[str, float | None]  # syllables / s of speech, per role

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _speech(entry: dict[str, Any], role: str) -> float:
    feats = (entry.get("roles", {}).get(role) or {}).get("features") or {}
    return max(0.0, float(feats.get("speech_s") or 0.0))


def _syllables(entry: dict[str, Any], role: str) -> float:
    feats = (entry.get("roles", {}).get(role) or {}).get("features") or {}
    return float(feats.get("syllables") or 0.0)


def call_metrics(timeline: list[dict[str, Any]], roles: list[str] | tuple[str, ...] | None = None) -> CallMetrics:
    """Talk ratio, silence %, overtalk % and per-role speech rate of a call's timeline."""
    if roles is None:
        roles = sorted({r for e in timeline for r in e.get("roles", {})})
    roles = list(roles)
    duration = 0.0
    silence = 0.0
    overtalk = 0.0
    speech = {r: 0.0 for r in roles}
    syllables = {r: 0.0 for r in roles}
    for e in timeline:
        dur = max(0.0, float(e["t_end"]) - float(e["t_start"]))
        duration += dur
        per = {r: min(_speech(e, r), dur) for r in roles}
        for r in roles:
            speech[r] += per[r]
            syllables[r] += _syllables(e, r)
        total = sum(per.values())
        silence += max(0.0, dur - total)
        if len(roles) >= 2:
            overtalk += max(0.0, total - dur)
    both = "customer" in speech and "agent" in speech
    talk_ratio = None
    if both and speech["agent"] > 0:
        talk_ratio = round(speech["customer"] / speech["agent"], 3)
    pct = (lambda x: round(100.0 * x / duration, 2)) if duration > 0 else (lambda x: None)
    return CallMetrics(
        duration_s=round(duration, 3),
        speech_s={r: round(v, 2) for r, v in speech.items()},
        talk_ratio=talk_ratio,
        silence_pct=pct(silence),
        overtalk_pct=pct(overtalk) if len(roles) >= 2 else None,
        speech_rate={r: (round(syllables[r] / speech[r], 3) if speech[r] >= MIN_RATE_SPEECH_S else None)
                     for r in roles},
    )
