"""Dialogue-level evaluation of the escalation tracker on CPED-valid (text cues only).

    OMP_NUM_THREADS=1 .venv/bin/python -m training.fusion.eval_cped  # tune + report: bench/RESULTS_escalation.md
    .venv/bin/python -m training.fusion.eval_cped --no-tune           # shipped rules only

Replay: each CPED dialogue is replayed once per speaker, that speaker as the "customer" (the others as
the agent), with synthetic timings (syllables / 4 per second, 0.4 s gaps; see ``cped.py``).  Each
customer utterance becomes one :class:`Cues` with text-emotion probabilities and lexicon hits, goes
through the calibrated fusion and the stage tracker (rules.yaml).  A dialogue *reaches* stage >= L when
any of its speaker replays does; it is *angry* when any utterance is labelled ``anger``.

Reported per split: hit rate = share of angry dialogues reaching >= L, false-alarm rate = share of
non-angry dialogues reaching >= L, for L = 2, 3, 4; the same per speaker replay ("track": a speaker
with >= 1 anger utterance vs none); and alert counts.  Thresholds are tuned on the TV series 32/39/40
("tune") and reported on 44/45 ("report"); the tuning maximises the mean Youden J of stage >= 2 and >= 3
with the dialogue false-alarm rates capped at stage >= 2 (``--max-fa2``, default 20 %) and >= 3
(``--max-fa3``, default 10 %).
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipelines.fusion.engine import CallAnalyzer
from pipelines.fusion.fuse import Fuser
from pipelines.fusion.rules import Rules, default_rules
from pipelines.settings import REPO_ROOT, get_settings
from training.fusion.cped import Utterance, load_dialogues, make_cues, split_of, text_cues

log = logging.getLogger("nuqi.fusion.eval_cped")

LEVELS = (2, 3, 4)


@dataclass
class Track:
    dialogue: str
    speaker: str
    split: str
    angry: bool
    max_level: int
    alerts: int
    first_anger_t: float | None
    first_reach_t: dict[int, float] = field(default_factory=dict)


def replay(utts: list[Utterance], speaker: str, tcs: dict[str, Any], fuser: Fuser, rules: Rules) -> Track:
    call = CallAnalyzer(fuser, rules)
    alerts = 0
    reach: dict[int, float] = {}
    first_anger = None
    for u in utts:
        role = "customer" if u.speaker == speaker else "agent"
        a = call.process(make_cues(u, tcs.get(u.uid), role))
        if role != "customer":
            continue
        if u.anger and first_anger is None:
            first_anger = u.t_start
        alerts += a.alert is not None
        for lvl in LEVELS:
            if a.stage.level >= lvl and lvl not in reach:
                reach[lvl] = u.t_end
    st = call.stage
    return Track(utts[0].dialogue, speaker, split_of(utts[0].tv),
                 any(u.anger for u in utts if u.speaker == speaker), st.max_level, alerts, first_anger, reach)


def run_all(dialogues: dict[str, list[Utterance]], tcs, fuser: Fuser, rules: Rules,
            splits: Sequence[str] = ("tune", "report")) -> list[Track]:
    out = []
    for utts in dialogues.values():
        if split_of(utts[0].tv) not in splits:
            continue
        for spk in sorted({u.speaker for u in utts}):
            out.append(replay(utts, spk, tcs, fuser, rules))
    return out


def summarise(tracks: list[Track], split: str) -> dict[str, Any]:
    tr = [t for t in tracks if t.split == split]
    dia: dict[str, dict[str, Any]] = {}
    for t in tr:
        d = dia.setdefault(t.dialogue, {"angry": False, "max": 0, "alerts": 0})
        d["angry"] |= t.angry
        d["max"] = max(d["max"], t.max_level)
        d["alerts"] += t.alerts
    res: dict[str, Any] = {"split": split, "dialogues": len(dia),
                           "angry_dialogues": sum(d["angry"] for d in dia.values()),
                           "tracks": len(tr), "angry_tracks": sum(t.angry for t in tr)}
    for lvl in LEVELS:
        pos = [d for d in dia.values() if d["angry"]]
        neg = [d for d in dia.values() if not d["angry"]]
        res[f"dia_hit_{lvl}"] = sum(d["max"] >= lvl for d in pos) / max(1, len(pos))
        res[f"dia_fa_{lvl}"] = sum(d["max"] >= lvl for d in neg) / max(1, len(neg))
        tpos = [t for t in tr if t.angry]
        tneg = [t for t in tr if not t.angry]
        res[f"trk_hit_{lvl}"] = sum(t.max_level >= lvl for t in tpos) / max(1, len(tpos))
        res[f"trk_fa_{lvl}"] = sum(t.max_level >= lvl for t in tneg) / max(1, len(tneg))
        lat = [t.first_reach_t[lvl] - t.first_anger_t for t in tpos
               if lvl in t.first_reach_t and t.first_anger_t is not None]
        res[f"trk_latency_{lvl}"] = statistics.median(lat) if lat else float("nan")
    neg = [d for d in dia.values() if not d["angry"]]
    pos = [d for d in dia.values() if d["angry"]]
    res["alerts_per_angry_dialogue"] = sum(d["alerts"] for d in pos) / max(1, len(pos))
    res["alerts_per_calm_dialogue"] = sum(d["alerts"] for d in neg) / max(1, len(neg))
    return res


def objective(s: dict[str, Any], max_fa2: float = 0.20, max_fa3: float = 0.10) -> float:
    """Tuning target: mean Youden J (hit - false alarm) of the dialogue-level stage >= 2 and >= 3,
    among settings whose false-alarm rates at stage >= 2 / >= 3 are at most ``max_fa2`` / ``max_fa3``
    (alerts start at stage 2: a call centre cannot afford an alert in every other calm call)."""
    j = ((s["dia_hit_2"] - s["dia_fa_2"]) + (s["dia_hit_3"] - s["dia_fa_3"])) / 2
    return j if s["dia_fa_2"] <= max_fa2 and s["dia_fa_3"] <= max_fa3 else j - 10.0


def grid() -> list[tuple[dict[str, Any], str]]:
    """Candidate overrides of rules.yaml: anger rise thresholds (fall = rise - 0.04 hysteresis gap) x
    persistence seconds x windows needed for stage 3."""
    base = default_rules()
    out = []
    # windows >= 2 for stages 2-3 is a design constraint, not tuned: live calls also feed short audio
    # chunks, and one chunk or one sentence must not make a complaint out of a calm call
    for r3, step, pscale, w3 in itertools.product((0.20, 0.24, 0.28, 0.32, 0.36, 0.42, 0.50),
                                                  (0.02, 0.04, 0.06), (0.5, 1.0, 2.0), (2, 3)):
        rise = {3: r3, 2: round(r3 - step, 3), 1: round(r3 - 2 * step, 3)}
        if rise[1] <= 0.1:
            continue
        fall = {lvl: round(rise[lvl] - 0.04, 3) for lvl in (1, 2, 3)}
        fall.update({lvl: fall[3] for lvl in (4, 5, 6)})
        secs = {lvl: round(v * pscale, 2) for lvl, v in base.persist_seconds.items()}
        wins = {1: 1, 2: min(2, w3), 3: w3}
        ov = {"anger": {"rise": rise, "fall": fall}, "persistence": {"seconds": secs, "windows": wins}}
        out.append((ov, f"rise={rise[1]:.2f}/{rise[2]:.2f}/{rise[3]:.2f} fall=rise-0.04 "
                        f"persist_seconds={secs[1]:g}/{secs[2]:g}/{secs[3]:g} windows={wins[1]}/{wins[2]}/{wins[3]}"))
    return out


def fmt_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = ("| rules | split | dialogues (angry) | hit ≥2 | FA ≥2 | hit ≥3 | FA ≥3 | hit ≥4 | FA ≥4 | "
            "alerts/angry dlg | alerts/calm dlg |")
    lines = [head, "|" + "---|" * 11]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['split']} | {s['dialogues']} ({s['angry_dialogues']}) | "
            + " | ".join(f"{s[f'dia_{k}_{lvl}']:.1%}" for lvl in LEVELS for k in ("hit", "fa"))
            + f" | {s['alerts_per_angry_dialogue']:.2f} | {s['alerts_per_calm_dialogue']:.2f} |")
    return "\n".join(lines)


def fmt_tracks(rows: list[tuple[str, dict[str, Any]]]) -> str:
    lines = ["| rules | split | speaker replays (with anger) | hit ≥2 | FA ≥2 | hit ≥3 | FA ≥3 | hit ≥4 | FA ≥4 | "
             "median delay to ≥3 (s) |", "|" + "---|" * 10]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['split']} | {s['tracks']} ({s['angry_tracks']}) | "
            + " | ".join(f"{s[f'trk_{k}_{lvl}']:.1%}" for lvl in LEVELS for k in ("hit", "fa"))
            + f" | {s['trk_latency_3']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CPED dialogue-level escalation evaluation")
    ap.add_argument("--no-tune", action="store_true", help="evaluate the shipped rules.yaml only")
    ap.add_argument("--no-lexicon", action="store_true", help="text emotion only (no keyword cues)")
    ap.add_argument("--max-fa2", type=float, default=0.20,
                    help="tuning constraint: dialogue false-alarm rate at stage >= 2 on the tune split")
    ap.add_argument("--max-fa3", type=float, default=0.10,
                    help="tuning constraint: dialogue false-alarm rate at stage >= 3 on the tune split")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "RESULTS_escalation.md")
    ap.add_argument("--cues", type=Path, default=None,
                    help="text cues JSON ({uid: {probs, lexicon}}) instead of the utterance model's, e.g. the "
                         "dialogue-context mode's cped_context_cues.json (python -m training.text.train_context)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jieba").setLevel(logging.WARNING)
    logging.getLogger("nuqi.fusion.alerts").setLevel(logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    dialogues = load_dialogues()
    if args.cues:
        tcs = json.loads(args.cues.read_text(encoding="utf-8"))
    else:
        tcs = text_cues(dialogues, use_lexicon=not args.no_lexicon)
    have_text = any(v.get("probs") for v in tcs.values())
    have_lex = any(v.get("lexicon") for v in tcs.values())
    fuser = Fuser.load(get_settings().models_dir / "fusion" / "params.json")
    rules = default_rules()

    shipped = run_all(dialogues, tcs, fuser, rules)
    rows = [("shipped", summarise(shipped, "tune")), ("shipped", summarise(shipped, "report"))]
    tuned_desc = None
    best = None
    if not args.no_tune:
        for ov, desc in grid():
            r = rules.with_overrides(ov)
            s = summarise(run_all(dialogues, tcs, fuser, r, splits=("tune",)), "tune")
            obj = objective(s, args.max_fa2, args.max_fa3)
            if best is None or obj > objective(best[0], args.max_fa2, args.max_fa3) + 1e-9:
                best = (s, ov, desc)
            log.info("%s  J=%.3f  hit/FA >=2 %.3f/%.3f >=3 %.3f/%.3f", desc, obj, s["dia_hit_2"], s["dia_fa_2"],
                     s["dia_hit_3"], s["dia_fa_3"])
        s_tune, ov, tuned_desc = best
        r = rules.with_overrides(ov)
        s_rep = summarise(run_all(dialogues, tcs, fuser, r, splits=("report",)), "report")
        rows += [("tuned", s_tune), ("tuned", s_rep)]

    cmd = "OMP_NUM_THREADS=1 .venv/bin/python -m training.fusion.eval_cped" + (
        " --no-tune" if args.no_tune else "") + (" --no-lexicon" if args.no_lexicon else "") + (
        f" --cues {args.cues}" if args.cues else "")
    md = [
        "# Escalation tracking on CPED-valid (dialogue level)",
        "",
        f"Command: `{cmd}` ({time.time() - t0:.0f} s on 1 thread).",
        "",
        "Data: CPED `valid_split.csv` (TV-series dialogues, per-utterance emotion labels). Tune = TV 32/39/40, "
        "report = TV 44/45 (disjoint series). Each dialogue is replayed once per speaker with that speaker as the "
        "customer (others as agent); timings are synthetic (4 syllables/s, 0.4 s gaps). A dialogue is *angry* "
        "if any utterance is labelled anger; it *reaches* stage ≥L if any replay does.",
        "",
        f"Cues: text emotion {'ON' if have_text else 'OFF (model missing)'}, lexicon {'ON' if have_lex else 'OFF'}; "
        f"fusion params `{fuser.params.source}`. No audio (CPED has none).",
        "",
        "## Dialogue level (hit = angry dialogues reaching ≥L, FA = calm dialogues reaching ≥L)",
        "",
        fmt_table(rows),
        "",
        "## Per speaker replay",
        "",
        fmt_tracks(rows),
        "",
    ]
    r = rules
    md += [f"Shipped rules (`pipelines/fusion/rules.yaml`): rise={r.rise[1]:.2f}/{r.rise[2]:.2f}/{r.rise[3]:.2f}, "
           f"fall={r.fall[1]:.2f}/{r.fall[2]:.2f}/{r.fall[3]:.2f}, persistence seconds="
           f"{r.persist_seconds[1]:g}/{r.persist_seconds[2]:g}/{r.persist_seconds[3]:g} and windows="
           f"{r.persist_windows[1]}/{r.persist_windows[2]}/{r.persist_windows[3]} within {r.horizon_s:g} s, "
           f"keyword jumps at hint ≥{r.immediate_min_hint} (weight ≥{r.immediate_min_weight:g}, or fused anger "
           f"≥{r.ambiguous_min_anger:.2f}), alerts from stage {r.alert_min_level}.", ""]
    md += [
        "Notes",
        "",
        "* Stage ≥4 on CPED comes only from words (complaint intent, external escalation) or sustained anger; "
        "TV dialogue rarely has them, and its false alarms at ≥4 are narrative mentions "
        "(「电视台有这规定」「违法的事」「报警」) that a call centre would treat as threats — by design, strong "
        "threat words move the stage at once.",
        "* The anger label is per utterance and was annotated with the video; the text model alone separates "
        "anger utterances weakly (AUC 0.62, `models/fusion/MODEL_CARD.md`), which bounds these figures.",
        "* 'tuned' is the grid optimum; the shipped persistence keeps 2/3/4 s (vs 1/1.5/2 s) for live audio, "
        "where windows are 1-2 s chunks, at a small cost on CPED.",
        "",
    ]
    if tuned_desc:
        md += [f"Tuned on the tune split (objective: mean Youden J of stage ≥2 and ≥3, subject to dialogue "
               f"FA ≥2 ≤ {args.max_fa2:.0%} and FA ≥3 ≤ {args.max_fa3:.0%}; grid of {len(grid())} settings): "
               f"`{tuned_desc}`.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
