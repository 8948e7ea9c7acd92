"""Chinese explanations: which cues drove an assessment, and by how much.

Every cue object carries the measured number in its text (「语速比开场快 38%」「音调升高 4.2 个半音」
「音量提高 6 dB」「提到“12315”」「第三次重复同一诉求」「文本情绪：愤怒 0.82」) and a ``weight`` (its
share of the fused log-odds, or the strength of a stage rule) used to rank them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import FusedAnger
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageUpdate, zh_ordinal
from pipelines.text.lexicon import KeywordHit

TEXT_LABEL_ZH = {"angry": "愤怒", "happy": "高兴", "neutral": "中性", "sad": "悲伤", "fear": "恐惧",
                 "surprise": "惊讶"}

# smallest changes worth naming (below these a listener would not notice)
MIN_RATE_PCT = 10.0
MIN_F0_ST = 1.0
MIN_F0_RANGE_ST = 2.0
MIN_LOUD_DB = 3.0
MIN_PROB = 0.30


@dataclass
class CueExplanation:
    # speech_rate | pitch | pitch_range | loudness | acoustic | text_emotion | repetition | calming |
    # external | complaint | killer_wait | killer_repeat | killer_annoy | killer_think | insult | demand | keyword
    kind: str
    value: float | str
    text_zh: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        v = round(self.value, 3) if isinstance(self.value, float) else self.value
        return {"kind": self.kind, "value": v, "text_zh": self.text_zh, "weight": round(self.weight, 3)}


@dataclass
class Explanation:
    cues: list[CueExplanation] = field(default_factory=list)
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"cues": [c.to_dict() for c in self.cues], "text": self.text}


def _fmt_num(x: float, digits: int = 1) -> str:
    s = f"{x:.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _feature_weight(fused: FusedAnger, group: str, feature: str) -> float:
    """Log-odds a single feature adds to the fused score (group pooling share x feature part)."""
    g = fused.groups.get(group)
    if g is None:
        return 0.0
    part = g.parts.get(feature, 0.0)
    contribution = g.contribution
    if group == "prosody" and group not in fused.available and "acoustic" in fused.groups:
        # prosody is an input of the acoustic model: it shares the acoustic model's contribution
        contribution = fused.groups["acoustic"].contribution
    pos = sum(v for v in g.parts.values() if v > 0)
    if pos <= 1e-9 or part <= 0 or contribution <= 0:
        return 0.0
    # the contribution is shared among the features that pushed up, in proportion to their parts
    return contribution * part / pos


def hit_kind(h: KeywordHit, rules: Rules) -> str:
    """Cue kind of a keyword hit (drives the guidance): external / complaint / killer_* / insult / demand."""
    if h.category in rules.external_categories:
        return "external"
    if h.category in rules.complaint_categories:
        return "complaint"
    if h.killer:
        return f"killer_{h.killer}"
    if h.category in rules.agent_bad_categories:
        return "insult"
    if h.category in rules.major_categories:
        return "demand"
    return "keyword"


def cue_list(cues: Cues, fused: FusedAnger, update: StageUpdate | None = None,
             rules: Rules | None = None) -> list[CueExplanation]:
    """All nameable cues of one window, strongest first."""
    out: list[CueExplanation] = []
    pros = cues.prosody or {}
    opening = "开场"
    if "speech_rate_pct" in pros and abs(pros["speech_rate_pct"]) >= MIN_RATE_PCT:
        v = pros["speech_rate_pct"]
        word = "快" if v > 0 else "慢"
        out.append(CueExplanation("speech_rate", v, f"语速比{opening}{word} {abs(v):.0f}%",
                                  _feature_weight(fused, "prosody", "rate")))
    if "f0_st" in pros and abs(pros["f0_st"]) >= MIN_F0_ST:
        v = pros["f0_st"]
        word = "升高" if v > 0 else "降低"
        out.append(CueExplanation("pitch", v, f"音调{word} {abs(v):.1f} 个半音",
                                  _feature_weight(fused, "prosody", "f0")))
    if "f0_range_st" in pros and pros["f0_range_st"] >= MIN_F0_RANGE_ST:
        v = pros["f0_range_st"]
        out.append(CueExplanation("pitch_range", v, f"音调起伏加大 {v:.1f} 个半音",
                                  _feature_weight(fused, "prosody", "f0_range")))
    if "loudness_db" in pros and abs(pros["loudness_db"]) >= MIN_LOUD_DB:
        v = pros["loudness_db"]
        word = "提高" if v > 0 else "降低"
        out.append(CueExplanation("loudness", v, f"音量{word} {_fmt_num(abs(v))} dB",
                                  _feature_weight(fused, "prosody", "loud")))
    if cues.acoustic_anger is not None and cues.acoustic_anger >= MIN_PROB:
        out.append(CueExplanation("acoustic", cues.acoustic_anger, f"声音怒气 {cues.acoustic_anger:.2f}",
                                  fused.groups["acoustic"].contribution if "acoustic" in fused.groups else 0.0))
    if cues.text_anger is not None:
        tw = fused.groups["text"].contribution if "text" in fused.groups else 0.0
        if cues.text_anger >= MIN_PROB:
            out.append(CueExplanation("text_emotion", cues.text_anger,
                                      f"文本情绪：愤怒 {cues.text_anger:.2f}", tw))
        elif cues.text_probs:
            lab, p = max(cues.text_probs.items(), key=lambda kv: kv[1])
            if lab not in ("neutral", "angry") and p >= 0.5 and lab in TEXT_LABEL_ZH:
                out.append(CueExplanation("text_emotion", p, f"文本情绪：{TEXT_LABEL_ZH[lab]} {p:.2f}", tw))
    kw_total = fused.groups["keyword"].contribution if "keyword" in fused.groups else 0.0
    hits = cues.active_hits
    wsum = sum(max(h.weight, 0.0) for h in hits) or 1.0
    seen: set[str] = set()
    r = rules or default_rules()
    for h in sorted(hits, key=lambda h: (-h.stage_hint, -h.weight)):
        if h.term in seen or h.weight < 0:  # calming hits are reported once below
            continue
        seen.add(h.term)
        w = kw_total * max(h.weight, 0.0) / wsum + 0.5 * h.stage_hint
        out.append(CueExplanation(hit_kind(h, r), h.term, f"提到“{h.term}”", w))
    if update is not None and update.repetition >= 2:
        out.append(CueExplanation("repetition", float(update.repetition),
                                  f"{zh_ordinal(update.repetition)}重复同一诉求", 0.8 * update.repetition))
    if cues.calming:
        out.append(CueExplanation("calming", 1.0, "出现缓和用语", -0.5))
    out.sort(key=lambda c: -c.weight)
    return out


def explain(cues: Cues, fused: FusedAnger, update: StageUpdate | None = None,
            top_k: int = 4, rules: Rules | None = None) -> Explanation:
    """Explanation of one customer window: top cues and one Chinese sentence."""
    allc = cue_list(cues, fused, update, rules)
    top = [c for c in allc if c.weight > 0][:top_k]
    if cues.calming and not any(c.kind == "calming" for c in top):
        top += [c for c in allc if c.kind == "calming"]
    head = f"怒气 {fused.fused:.2f}"
    if update is not None:
        if update.changed:
            arrow = "升至" if update.state.level > update.previous_level else "降至"
            head += f"，阶段{arrow}{update.state.name}"
            if update.reason:
                head += f"（{update.reason}）"
        else:
            head += f"，阶段：{update.state.name}"
    body = "；".join(c.text_zh for c in top)
    text = f"{head}。依据：{body}。" if body else f"{head}。"
    return Explanation(cues=top, text=text)
