"""Complaint type at call end: 无投诉 / 普通投诉 / 重大投诉 / 升级投诉 / 疑难投诉, with a Chinese reason.

The complaint *type* is the call's outcome; it is not the escalation *stage* (0 平静 … 5 投诉, 6 投诉升级).
The two look alike (类型「升级投诉」, 阶段「投诉升级」), so every reason names stages as 「阶段…」 in quotes
and reports show the type under 「投诉类型」 and the stage under 「阶段」.

Decision (thresholds in ``rules.yaml`` ``complaint`` and ``keywords``), first match wins:
  无投诉    the stage never reached ``complaint.min_level`` (default 5 投诉)
  升级投诉  stage 6 was reached or the customer named an external channel (12315 / 媒体 / 律师 …)
  重大投诉  big demands: a hit in ``keywords.major_categories`` (lexicon ``demands``) whose stage hint is
            >= ``keywords.major_min_hint`` (赔偿 / 索赔 / 给个说法, not a plain 退款)
  疑难投诉  the same demand repeated >= ``difficult_repeats`` times, complaint stages (>= 4) lasting
            >= ``difficult_seconds``, or the call ending unresolved (still at >= ``unresolved_level``)
            after the customer had to repeat a demand
  普通投诉  otherwise
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageState

TYPES = ("无投诉", "普通投诉", "重大投诉", "升级投诉", "疑难投诉")


@dataclass
class ComplaintResult:
    type: str
    reason: str
    max_level: int
    max_level_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "max_level": self.max_level,
                "max_level_name": self.max_level_name}


def classify_complaint(
    state: StageState,
    stats: Mapping[str, Any],
    end_t: float | None = None,
    rules: Rules | None = None,
) -> ComplaintResult:
    """Classify a finished call from its stage history and the tracker's call statistics."""
    r = rules or default_rules()
    end = float(end_t if end_t is not None else stats.get("last_t", state.since))
    top = state.max_level
    top_name = r.name(top)
    cats: dict[str, int] = dict(stats.get("categories", {}))
    reps = int(stats.get("max_repetition", 0))

    if top < r.complaint_min_level:
        return ComplaintResult("无投诉", f"最高阶段「{top_name}」，未到「{r.name(r.complaint_min_level)}」阶段", top,
                               top_name)

    cat_terms: dict[str, list[str]] = dict(stats.get("category_terms", {}))

    def named(categories: list[str]) -> str:
        ts = [t for c in categories for t in cat_terms.get(c, [])]
        return "（提到" + "、".join(f"“{t}”" for t in ts[:3]) + "）" if ts else ""

    ext = [c for c in cats if c in r.external_categories]
    if top >= 6 or ext:
        why = "客户提出向外部投诉/曝光" + named(ext) if ext else f"阶段达到「{r.name(6)}」"
        return ComplaintResult("升级投诉", why, top, top_name)

    cat_hint: dict[str, int] = dict(stats.get("category_max_hint", {}))
    major = [c for c in cats if c in r.major_categories and cat_hint.get(c, 0) >= r.major_min_hint]
    if major:
        return ComplaintResult("重大投诉", "客户提出赔偿/索赔/要说法等重大诉求" + named(major), top, top_name)

    secs = state.seconds_at_or_above(4, end)
    reasons = []
    if reps >= r.difficult_repeats:
        reasons.append(f"同一诉求重复 {reps} 次")
    if secs >= r.difficult_seconds:
        reasons.append(f"投诉阶段持续 {secs / 60:.1f} 分钟")
    unresolved = state.level >= r.unresolved_level
    if unresolved and reps >= 2 and not reasons:
        reasons.append(f"同一诉求重复 {reps} 次")
    if reasons and unresolved:
        reasons.append(f"结束时仍在「{state.name}」阶段")
    if reasons:
        return ComplaintResult("疑难投诉", "，".join(reasons), top, top_name)
    if state.level < top:
        return ComplaintResult("普通投诉", f"阶段达到「{top_name}」，通话中得到缓解（结束时为「{state.name}」）", top,
                               top_name)
    return ComplaintResult("普通投诉", f"阶段达到「{top_name}」，结束时仍在该阶段，未见缓解", top, top_name)

