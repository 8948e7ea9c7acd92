"""Six-stage escalation tracker of one call's customer (persistence, hysteresis, decay, repetition).

Stages: 0 平静, 1 潜在不满, 2 即将转化为抱怨, 3 显化抱怨, 4 潜在投诉, 5 投诉, 6 投诉升级.

Per customer window the tracker receives the :class:`~pipelines.fusion.cues.Cues` and their
:class:`~pipelines.fusion.fuse.FusedAnger` and moves the stage by the rules in ``rules.yaml``:

* rise by anger: the newest window must support the stage (anger >= rise[L]) and the windows of the
  last ``horizon_s`` seconds must add up to ``seconds[L]`` of supporting speech in ``windows[L]``
  windows (no alert on one loud second); anger alone reaches at most stage 3, sustained fury stage 4;
* rise by words at once: strong keyword hits with a stage hint >= ``immediate_min_hint`` (投诉 intent -> 5,
  12315/媒体/律师 -> 6; weak/ambiguous ones only in an angry window); lower hints count as support like
  anger, at most ``weak_max_lift`` stages above the anger's own level;
* rise by repetition: the n-th time the customer voices the same demand lifts the stage to
  ``repetition.floors[n]``;
* decay: after ``decay.seconds[L]`` of calm customer speech (anger < fall[L] < rise[L]: hysteresis;
  calming words count ``calming_boost`` times) the stage steps down by one, never below the floor
  that a lodged complaint leaves (``decay.floor_after``).

The whole call memory is JSON-serialisable: :meth:`StageTracker.state_dict` /
:meth:`StageTracker.from_state`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.errors import InputError
from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import FusedAnger
from pipelines.fusion.rules import Rules, default_rules

log = logging.getLogger("nuqi.fusion.stage")

STATE_VERSION = 1
_ZH_NUM = "零一二三四五六七八九十"


def zh_ordinal(n: int) -> str:
    """3 -> 「第三次」."""
    if 0 < n <= 10:
        return f"第{_ZH_NUM[n]}次"
    return f"第 {n} 次"


# --------------------------------------------------------------------------- state
@dataclass
class Transition:
    level: int
    name: str
    at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "name": self.name, "at": round(self.at, 3), "reason": self.reason}


@dataclass
class StageState:
    """Where the call stands: level, its Chinese name, since when (call seconds), and all transitions."""

    level: int = 0
    name: str = "平静"
    since: float = 0.0
    history: list[Transition] = field(default_factory=list)

    @property
    def max_level(self) -> int:
        return max([self.level, *(t.level for t in self.history)])

    def seconds_at_or_above(self, level: int, until: float) -> float:
        """Call seconds spent at a stage >= ``level`` up to ``until``."""
        total, cur, start = 0.0, 0, 0.0
        for tr in self.history:
            if cur >= level:
                total += max(0.0, tr.at - start)
            cur, start = tr.level, tr.at
        if cur >= level:
            total += max(0.0, until - start)
        return total

    def state_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "since": round(self.since, 3),
            "history": [t.to_dict() for t in self.history],
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> "StageState":
        return cls(
            level=int(d["level"]),
            name=str(d["name"]),
            since=float(d["since"]),
            history=[Transition(int(t["level"]), str(t["name"]), float(t["at"]), str(t["reason"]))
                     for t in d.get("history", [])],
        )

    def copy(self) -> "StageState":
        return StageState.from_state(self.state_dict())


@dataclass
class StageUpdate:
    """What one customer window did to the stage (input of explain / alerts)."""

    state: StageState
    previous_level: int
    changed: bool
    reason: str | None
    support_level: int  # stage this window alone supports (anger / weak keyword hints)
    keyword_level: int  # effective keyword stage hint of this window (0 if none)
    keyword_terms: list[str]  # active (non-negated) keyword terms of this window
    keyword_categories: list[str]  # their lexicon categories
    repetition: int  # how many times the demand of this window has now been voiced (0/1: no repeat)
    repetition_key: str | None
    calm_seconds: float  # calm customer speech accumulated toward the next step down


def union_seconds(intervals: list[tuple[float, float]] | list[list[float]]) -> float:
    """Length of the union of [start, end] intervals: an audio chunk and the transcript turn covering the
    same speech must not count twice toward persistence, decay or sustained anger."""
    total, cur_s, cur_e = 0.0, None, None
    for a, b in sorted((float(x[0]), float(x[1])) for x in intervals):
        if cur_e is None or a > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


# --------------------------------------------------------------------------- text helpers
_KEEP = re.compile(r"[\u4e00-\u9fff0-9A-Za-z]")


def normalise_text(text: str | None) -> str:
    return "".join(_KEEP.findall(text or "")).lower()


def _bigrams(s: str) -> set[str]:
    return {s[i:i + 2] for i in range(len(s) - 1)} if len(s) > 1 else {s}


def text_similarity(a: str, b: str) -> float:
    """Dice coefficient of the character-bigram sets of two normalised texts."""
    if not a or not b:
        return 0.0
    A, B = _bigrams(a), _bigrams(b)
    return 2.0 * len(A & B) / (len(A) + len(B))


# --------------------------------------------------------------------------- tracker
class StageTracker:
    """Tracks the escalation stage of one call's customer.  Not thread-safe; one per call."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()
        self.state = StageState(level=0, name=self.rules.name(0), since=0.0, history=[])
        # [t_start, t_end, support_level, fused, calming, stream]; stream 1 = transcript turn, 0 = audio window
        self._evidence: list[list[float]] = []
        self._calm_s = 0.0
        self._calm_until = float("-inf")  # call time up to which calm speech was already counted
        self._floor = 0
        self._turns: list[dict[str, Any]] = []  # {t, t_start, norm, keys}
        self._next_text_key = 0
        self.stats: dict[str, Any] = {
            "customer_speech_s": 0.0,
            "peak_anger": 0.0,
            "last_t": 0.0,
            "max_repetition": 0,
            "categories": {},
            "terms": {},
        }

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "stage": self.state.state_dict(),
            "evidence": [[round(x, 4) for x in e] for e in self._evidence],
            "calm_s": round(self._calm_s, 4),
            "calm_until": None if self._calm_until == float("-inf") else round(self._calm_until, 4),
            "floor": self._floor,
            "turns": self._turns,
            "next_text_key": self._next_text_key,
            "stats": self.stats,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any], rules: Rules | None = None) -> "StageTracker":
        if int(d.get("version", 0)) != STATE_VERSION:
            raise InputError(f"unsupported stage-tracker state version {d.get('version')!r}")
        tr = cls(rules)
        tr.state = StageState.from_state(d["stage"])
        tr._evidence = [list(map(float, e)) for e in d.get("evidence", [])]
        tr._calm_s = float(d.get("calm_s", 0.0))
        cu = d.get("calm_until")
        tr._calm_until = float("-inf") if cu is None else float(cu)
        tr._floor = int(d.get("floor", 0))
        tr._turns = [dict(t) for t in d.get("turns", [])]
        tr._next_text_key = int(d.get("next_text_key", 0))
        tr.stats = dict(d.get("stats", tr.stats))
        return tr

    # ------------------------------------------------------------------ keywords
    def keyword_levels(self, cues: Cues, anger: float) -> tuple[int, int, list[str]]:
        """(immediate level, weak support level, terms behind the immediate level) of a window.

        Hits with a stage hint >= ``immediate_min_hint`` move the stage at once when they are strong
        (weight >= ``immediate_min_weight``) or the window is angry (>= ``ambiguous_min_anger``);
        otherwise they do not move the stage.  Lower hints are weak support that needs persistence.
        """
        r = self.rules
        immediate, weak, terms = 0, 0, []
        hits = cues.active_hits
        for h in hits:
            hint = h.stage_hint
            if hint >= r.immediate_min_hint:
                strength = h.weight / r.hypothetical_factor if h.hypothetical else h.weight
                if strength >= r.immediate_min_weight - 1e-9 or anger >= r.ambiguous_min_anger:
                    if hint > immediate:
                        immediate, terms = hint, [h.term]
                    elif hint == immediate and h.term not in terms:
                        terms.append(h.term)
            else:
                weak = max(weak, hint)
        if not hits and cues.keyword_stage_hint:  # a lexicon result without hit details
            if cues.keyword_stage_hint >= r.immediate_min_hint:
                immediate = cues.keyword_stage_hint
            else:
                weak = max(weak, cues.keyword_stage_hint)
        return immediate, weak, terms

    # ------------------------------------------------------------------ repetition
    def _repetition(self, cues: Cues) -> tuple[int, str | None]:
        r = self.rules
        t = cues.t_end
        self._turns = [u for u in self._turns if u["t"] >= t - r.rep_horizon_s]
        norm = normalise_text(cues.text)
        if self._turns and self._turns[-1]["t_start"] == cues.t_start and self._turns[-1]["norm"] == norm:
            return 0, None  # the same turn sent again
        keys: list[str] = sorted({
            f"cat:{h.category}" for h in cues.active_hits if h.category in r.demand_categories
        })
        if len(norm) >= r.rep_min_chars:
            match = None
            for u in reversed(self._turns):
                if len(u["norm"]) >= r.rep_min_chars and text_similarity(norm, u["norm"]) >= r.rep_similarity:
                    match = next((k for k in u["keys"] if k.startswith("txt:")), None)
                    if match:
                        break
            if match is None:
                match = f"txt:{self._next_text_key}"
                self._next_text_key += 1
            keys.append(match)
        if not keys:
            return 0, None
        self._turns.append({"t": t, "t_start": cues.t_start, "norm": norm, "keys": keys})
        best_n, best_key = 0, None
        for k in keys:
            n = sum(1 for u in self._turns if k in u["keys"])
            if n > best_n:
                best_n, best_key = n, k
        return best_n, best_key

    # ------------------------------------------------------------------ main step
    @staticmethod
    def _support(entries: list[list[float]], level: int) -> tuple[float, int]:
        """Supporting seconds (union of intervals) and windows (the larger of the audio-window and the
        transcript-turn counts) of the entries at or above ``level``."""
        sup = [e for e in entries if e[2] >= level]
        n_turns = sum(1 for e in sup if len(e) > 5 and e[5] >= 1)
        return union_seconds([e[:2] for e in sup]), max(n_turns, len(sup) - n_turns)

    def _move(self, level: int, at: float, reason: str) -> None:
        level = max(0, min(6, level))
        self.state.level = level
        self.state.name = self.rules.name(level)
        self.state.since = at
        self.state.history.append(Transition(level, self.state.name, at, reason))
        self._floor = max(self._floor, self.rules.floor_after.get(level, 0))
        self._calm_s = 0.0
        log.debug("stage -> %d %s at %.1f: %s", level, self.state.name, at, reason)

    def update(self, cues: Cues, fused: FusedAnger) -> StageUpdate:
        if cues.role != "customer":
            raise InputError("the stage tracker follows the customer; agent cues go to AgentMonitor")
        r = self.rules
        t, f = cues.t_end, fused.fused
        prev = self.state.level

        # --- bookkeeping
        st = self.stats
        until = st.get("speech_until")
        st["customer_speech_s"] = st.get("customer_speech_s", 0.0) + max(
            0.0, t - max(cues.t_start, until if until is not None else cues.t_start))
        st["speech_until"] = max(t, until if until is not None else t)
        st["peak_anger"] = max(st.get("peak_anger", 0.0), f)
        st["last_t"] = max(st.get("last_t", 0.0), t)
        cat_hint = st.setdefault("category_max_hint", {})
        cat_terms = st.setdefault("category_terms", {})
        for h in cues.active_hits:
            if h.category:
                st["categories"][h.category] = st["categories"].get(h.category, 0) + 1
                cat_hint[h.category] = max(cat_hint.get(h.category, 0), h.stage_hint)
                terms = cat_terms.setdefault(h.category, [])
                if h.term not in terms and len(terms) < 5:
                    terms.append(h.term)
            st["terms"][h.term] = st["terms"].get(h.term, 0) + 1

        # --- this window's evidence
        kw_level, weak_kw, kw_terms = self.keyword_levels(cues, f)
        anger_level = max([lvl for lvl, thr in r.rise.items() if f >= thr], default=0)
        weak_support = min(weak_kw, r.anger_max_level, anger_level + r.weak_max_lift)
        if f < r.weak_min_anger:
            weak_support = 0
        support = max(anger_level, weak_support)
        is_turn = cues.text is not None or cues.text_anger is not None or bool(cues.keyword_hits)
        self._evidence.append([cues.t_start, t, float(support), f, 1.0 if cues.calming else 0.0,
                               1.0 if is_turn else 0.0])
        keep = max(r.horizon_s, r.sustained_horizon_s)
        self._evidence = [e for e in self._evidence if e[1] >= t - keep]
        rep_n, rep_key = self._repetition(cues)
        st["max_repetition"] = max(st.get("max_repetition", 0), rep_n)

        # --- candidate rises
        cands: list[tuple[int, str]] = []
        recent = [e for e in self._evidence if e[1] >= t - r.horizon_s]
        for lvl in sorted(r.rise):
            if support < lvl:
                break
            secs, n = self._support(recent, lvl)
            if secs >= r.persist_seconds[lvl] and n >= r.persist_windows[lvl]:
                why = f"怒气 {f:.2f}，≥{r.rise[lvl]:.2f} 已持续 {secs:.0f} 秒"
                if weak_support >= lvl and anger_level < lvl:
                    weak_terms = [h.term for h in cues.active_hits if h.stage_hint == weak_kw]
                    why = f"不满用语（{'、'.join(weak_terms[:2])}）持续 {secs:.0f} 秒"
                cands.append((lvl, why))
        if f >= r.sustained4_threshold:
            secs = union_seconds([e[:2] for e in recent if e[3] >= r.sustained4_threshold])
            if secs >= r.sustained4_seconds:
                cands.append((4, f"高怒气（≥{r.sustained4_threshold:.2f}）持续 {secs:.0f} 秒"))
        if kw_level >= r.immediate_min_hint:
            terms = "、".join(f"“{x}”" for x in kw_terms[:3]) or "投诉用语"
            cands.append((kw_level, f"提到{terms}"))
        # a repeated demand word lifts the stage only with some displeasure; a near-identical sentence always
        if rep_n >= 2 and rep_key and (rep_key.startswith("txt:") or f >= r.weak_min_anger):
            floors = [lvl for n, lvl in r.rep_floors.items() if rep_n >= n]
            if floors:
                cands.append((max(floors), f"{zh_ordinal(rep_n)}重复同一诉求"))

        target, reason = prev, None
        for lvl, why in cands:
            if lvl > target:
                target, reason = lvl, why
        if target > prev:
            self._move(target, t, reason or "")
        elif prev > 0:
            # --- hysteresis + decay
            hold = r.rise[min(prev, r.anger_max_level)]
            new_s = max(0.0, t - max(cues.t_start, self._calm_until))  # calm time not counted yet
            if f >= hold or support >= prev or kw_level >= prev:
                self._calm_s = 0.0
            elif f < r.fall[prev]:
                self._calm_s += new_s * (r.calming_boost if cues.calming else 1.0)
                self._calm_until = max(self._calm_until, t)
            elif cues.calming:
                self._calm_s += new_s * r.calming_boost
                self._calm_until = max(self._calm_until, t)
            if self._calm_s >= r.decay_seconds[prev] and prev > self._floor:
                why = f"客户平静 {self._calm_s:.0f} 秒（怒气 {f:.2f} < {r.fall[prev]:.2f}）"
                if cues.calming:
                    why = f"客户情绪缓和（怒气 {f:.2f}，出现缓和用语）"
                self._move(prev - 1, t, why)
                reason = why
        return StageUpdate(
            state=self.state.copy(),
            previous_level=prev,
            changed=self.state.level != prev,
            reason=reason if self.state.level != prev else None,
            support_level=support,
            keyword_level=max(kw_level, weak_kw),
            keyword_terms=[h.term for h in cues.active_hits],
            keyword_categories=sorted({h.category for h in cues.active_hits if h.category}),
            repetition=rep_n,
            repetition_key=rep_key,
            calm_seconds=self._calm_s,
        )
