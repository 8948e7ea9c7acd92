"""Input dataclasses of the decision layer: what one window / turn of one speaker tells us.

The fusion layer hands over plain numbers from the acoustic and text pipelines; the one shared type is the
lexicon's :class:`~pipelines.text.lexicon.KeywordHit` (a light dataclass).  :meth:`Cues.from_parts` accepts
their result objects by duck typing (any object or mapping with the documented attribute names).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.audio.decode import ROLES
from pipelines.errors import InputError
from pipelines.text.lexicon import KeywordHit

# names of the relative prosody measures (vs the speaker's opening baseline) the fusion reads
DELTA_KEYS = ("speech_rate_pct", "f0_st", "f0_range_st", "loudness_db")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a mapping or an object, ``default`` when absent."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _finite_or_none(x: Any, what: str) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number, got {x!r}") from exc
    if not math.isfinite(v):
        return None
    return v


def _prob_or_none(x: Any, what: str) -> float | None:
    v = _finite_or_none(x, what)
    if v is None:
        return None
    if v < -1e-6 or v > 1 + 1e-6:
        raise InputError(f"{what} must lie in [0, 1], got {v}")
    return min(1.0, max(0.0, v))


def as_keyword_hit(obj: Any) -> KeywordHit:
    """A :class:`KeywordHit` from a hit, a bare term, or a mapping/object with its field names."""
    if isinstance(obj, KeywordHit):
        return obj
    if isinstance(obj, str):
        return KeywordHit(term=obj)
    term = _get(obj, "term")
    if not term:
        raise InputError(f"keyword hit without a term: {obj!r}")
    hint = _get(obj, "stage_hint", 0) or 0
    killer = _get(obj, "killer")
    if killer is True:
        killer = "yes"
    return KeywordHit(
        term=str(term),
        category=str(_get(obj, "category", "") or ""),
        weight=float(_get(obj, "weight", 1.0) if _get(obj, "weight") is not None else 1.0),
        stage_hint=int(max(0, min(6, int(hint)))),
        start=_get(obj, "start"),
        end=_get(obj, "end"),
        text=_get(obj, "text"),
        negated=bool(_get(obj, "negated", False)),
        killer=str(killer) if killer else None,
        hypothetical=bool(_get(obj, "hypothetical", False)),
    )


@dataclass
class Cues:
    """Everything known about one window (or one turn) of one speaker.

    Times are call time in seconds.  Every cue is optional: ``None`` means "this source did not run"
    (no audio, no transcript, baseline not ready); fusion renormalises over what is present.

    acoustic_anger  probability of anger from the acoustic model, or None
    delta           prosody relative to the speaker's opening baseline: speech_rate_pct (%),
                    f0_st (semitones), f0_range_st (semitones), loudness_db (dB); read only when
                    ``baseline_ready``
    text_probs      text-emotion probabilities over angry/happy/neutral/sad/fear/surprise
    text_anger      text anger probability (defaults to text_probs["angry"])
    text_calibrated text_anger is already a calibrated P(anger) of real dialogue (the dialogue-context mode,
                    pipelines/text/context.py): the fusion takes it as the text group's probability instead
                    of calibrating the utterance model's score
    keyword_hits    lexicon hits (KeywordHit objects or dicts); negated hits carry no evidence
    keyword_score   the lexicon's score for this text (None: lexicon did not run)
    keyword_stage_hint  the lexicon's stage hint for the whole text (0..6)
    calming         the lexicon found calming / thanking language
    text            the transcript of the window (used for repetition detection)
    """

    t_start: float
    t_end: float
    role: str = "customer"
    acoustic_anger: float | None = None
    delta: dict[str, float] | None = None
    baseline_ready: bool = False
    text_probs: dict[str, float] | None = None
    text_anger: float | None = None
    text_calibrated: bool = False
    keyword_hits: list[KeywordHit] = field(default_factory=list)
    keyword_score: float | None = None
    keyword_stage_hint: int = 0
    calming: bool = False
    text: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError(f"role must be one of {ROLES}, got {self.role!r}")
        self.t_start = float(self.t_start)
        self.t_end = float(self.t_end)
        if not (math.isfinite(self.t_start) and math.isfinite(self.t_end)):
            raise InputError("cue times must be finite")
        if self.t_end < self.t_start:
            raise InputError(f"cue window ends ({self.t_end}) before it starts ({self.t_start})")
        self.acoustic_anger = _prob_or_none(self.acoustic_anger, "acoustic_anger")
        if self.delta is not None:
            clean = {}
            for k, v in dict(self.delta).items():
                fv = _finite_or_none(v, f"delta[{k}]")
                if fv is not None:
                    clean[str(k)] = fv
            self.delta = clean or None
        if self.text_probs is not None:
            probs = {}
            for k, v in dict(self.text_probs).items():
                pv = _prob_or_none(v, f"text_probs[{k}]")
                if pv is not None:
                    probs[str(k)] = pv
            self.text_probs = probs or None
        self.text_anger = _prob_or_none(self.text_anger, "text_anger")
        if self.text_anger is None and self.text_probs is not None and "angry" in self.text_probs:
            self.text_anger = self.text_probs["angry"]
        self.keyword_hits = [as_keyword_hit(h) for h in (self.keyword_hits or [])]
        self.keyword_score = _finite_or_none(self.keyword_score, "keyword_score")
        self.keyword_stage_hint = int(max(0, min(6, int(self.keyword_stage_hint or 0))))
        self.calming = bool(self.calming)
        if self.text is not None:
            self.text = str(self.text)

    # ------------------------------------------------------------------ helpers
    @property
    def duration(self) -> float:
        return max(0.0, self.t_end - self.t_start)

    @property
    def active_hits(self) -> list[KeywordHit]:
        """Hits that count as evidence (negated ones, e.g. 「不是要投诉」, do not)."""
        return [h for h in self.keyword_hits if not h.negated]

    @property
    def prosody(self) -> dict[str, float] | None:
        """The baseline-relative prosody, only when the baseline is ready."""
        if not self.baseline_ready or not self.delta:
            return None
        return {k: self.delta[k] for k in DELTA_KEYS if k in self.delta}  or None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Cues":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_parts(
        cls,
        t_start: float,
        t_end: float,
        role: str = "customer",
        *,
        acoustic_anger: float | None = None,
        delta: Any = None,
        baseline_ready: bool | None = None,
        emotion: Any = None,
        lexicon: Any = None,
        text: str | None = None,
    ) -> "Cues":
        """Build cues from the other pipelines' result objects (duck-typed).

        ``delta``: a FeatureDelta-like object or mapping with speech_rate_pct / f0_st / f0_range_st /
        loudness_db (and optionally ``baseline_ready`` / ``ready``).  ``emotion``: an EmotionResult-like
        object with ``probs`` and ``anger``.  ``lexicon``: a LexiconResult-like object with ``hits``,
        ``score``, ``stage_hint`` and ``calming``.
        """
        dd: dict[str, float] | None = None
        if delta is not None:
            if dataclasses.is_dataclass(delta) and not isinstance(delta, type):
                raw = dataclasses.asdict(delta)
            elif isinstance(delta, Mapping):
                raw = dict(delta)
            else:
                raw = {k: getattr(delta, k) for k in DELTA_KEYS if hasattr(delta, k)}
            dd = {k: raw[k] for k in DELTA_KEYS if raw.get(k) is not None}
            if baseline_ready is None:
                ready = raw.get("baseline_ready", raw.get("ready"))
                baseline_ready = bool(ready) if ready is not None else bool(dd)
        probs = _get(emotion, "probs")
        return cls(
            t_start=t_start,
            t_end=t_end,
            role=role,
            acoustic_anger=acoustic_anger,
            delta=dd,
            baseline_ready=bool(baseline_ready),
            text_probs=dict(probs) if probs else None,
            text_anger=_get(emotion, "anger"),
            keyword_hits=list(_get(lexicon, "hits", []) or []),
            keyword_score=_get(lexicon, "score"),
            keyword_stage_hint=int(_get(lexicon, "stage_hint", 0) or 0),
            calming=bool(_get(lexicon, "calming", False)),
            text=text,
        )
