"""Audio-only escalation on real emotional speech: how often does a live "call" reach each stage?

No labelled call-centre audio exists in ../shared/data, so this builds one continuous stream per
EmoDB speaker and body type (real, acted German speech; 听语速/听语调 cues are largely
language-independent) and runs it through the live path exactly as the service does — 1 s chunks,
``pipelines.session.process_audio`` (stream features → speaker baseline → acoustic anger → fusion →
stage tracker → alerts), no transcript:

* opening: the speaker's neutral clips of 7 of the 10 sentences (the caller's calm opening; the baseline
  is formed from the first ``--baseline-s`` s of speech, 8 s rather than the live 15 s because EmoDB has
  only ~16 s of neutral speech per speaker);
* body, one stream each: ``anger``; ``calm`` (the remaining neutral sentences, boredom, sadness: low
  arousal); ``happiness`` (aroused but not angry: the hard false-alarm case); ``fear+disgust``.

Clips are joined with 0.4 s pauses, white line noise at -60 dBFS is added, and each stream is scored at
16 kHz and at 8 kHz telephone band.  A stream "reaches" stage L if the tracker is at >= L at any chunk of
the body.  The acoustic model's cue networks were trained on EmoDB speakers other than 16
(``held_out_emodb_speakers`` in its model.json) and its CNN member on all of EmoDB, so the acoustic cue is
in sample; the prosody cue (deltas vs the opening) is a prior fitted on no audio at all.

One more stream (body ``mandarin-calm``) is real Mandarin that no model was trained on: the 50 read
sentences of AISHELL speaker S0150 (``speech/aishell-sample-dev``, ~215 s) in manifest order, the first
~20 s as the opening and the rest as a calm body: a false-alarm check on the product's language.
Figures go to ``bench/RESULTS_audio_escalation.md``::

    OMP_NUM_THREADS=1 .venv/bin/python -m training.fusion.eval_audio_calls [--params P/params.json ...] \
        --results bench/RESULTS_audio_escalation.md
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import soxr

from pipelines.audio.decode import DecodedChunk
from pipelines.fusion.engine import DecisionModel
from pipelines.registry import ModelRegistry
from pipelines.session import CallState, process_audio
from pipelines.settings import Settings
from training.audio.eval_rate import telephone
from training.results_file import write_below_mark

log = logging.getLogger("nuqi.fusion.eval_audio_calls")

BODIES = {
    "anger": {"anger"},
    "calm": {"neutral", "boredom", "sadness"},
    "happiness": {"happiness"},
    "fear+disgust": {"fear", "disgust"},
}
MANDARIN_CALM = "mandarin-calm"
MANDARIN_OPENING_S = 20.0
GAP_S = 0.4
NOISE_DBFS = -60.0
RATES = (16000, 8000)
RESULTS_MARK = "<!-- tables below are written by training/fusion/eval_audio_calls.py -->"


@dataclass(frozen=True)
class StreamResult:
    speaker: str
    body: str
    rate: int
    body_s: float
    peak_stage: int
    peak_fused: float
    alerts: int
    first_stage2_s: float | None  # seconds into the body
    median_acoustic: float | None = None  # the body's per-chunk acoustic anger probabilities
    p90_acoustic: float | None = None
    p90_fused: float | None = None  # the body's per-chunk fused anger


def _clip_audio(path: Path) -> np.ndarray:
    x, fs = sf.read(path, dtype="float64")
    if x.ndim > 1:
        x = x.mean(axis=1)
    return soxr.resample(x, fs, 16000) if fs != 16000 else x


def build_stream(paths: list[Path], rng: np.random.Generator) -> np.ndarray:
    gap = np.zeros(int(GAP_S * 16000))
    parts = []
    for p in paths:
        parts += [_clip_audio(p), gap]
    x = np.concatenate(parts)
    return x + rng.normal(0.0, 10 ** (NOISE_DBFS / 20), x.size)


def run_stream(x: np.ndarray, rate: int, body_start_s: float, models: ModelRegistry) -> dict:
    x = telephone(x) if rate == 8000 else x
    state = CallState()
    peak, peak_fused, alerts, first2 = 0, 0.0, 0, None
    acoustic, fused = [], []
    for seq, i in enumerate(range(0, x.size, rate)):
        block = x[i:i + rate].astype(np.float32)
        chunk = DecodedChunk(sample_rate=rate, input_rate=rate, duration_s=block.size / rate,
                             audio={"customer": block}, encoding="file")
        result = process_audio(state, chunk, seq, models, i / rate)
        entry = result.entry
        alerts += len(result.alerts)
        role = entry["roles"]["customer"]
        if "stage" not in role or entry["t_end"] <= body_start_s:
            continue
        level = int(role["stage"]["level"])
        peak = max(peak, level)
        peak_fused = max(peak_fused, float(role["anger"].get("fused") or 0.0))
        if role["anger"].get("acoustic") is not None:
            acoustic.append(float(role["anger"]["acoustic"]))
            fused.append(float(role["anger"].get("fused") or 0.0))
        if level >= 2 and first2 is None:
            first2 = round(entry["t_end"] - body_start_s, 1)

    def q(v: list[float], at: float) -> float | None:
        return round(float(np.quantile(v, at)), 4) if v else None

    return {"peak_stage": peak, "peak_fused": round(peak_fused, 4), "alerts": alerts, "first_stage2_s": first2,
            "median_acoustic": q(acoustic, 0.5), "p90_acoustic": q(acoustic, 0.9), "p90_fused": q(fused, 0.9)}


def _score(x: np.ndarray, opening_s: float, speaker: str, body: str, body_s: float, rates: Sequence[int],
           models: ModelRegistry) -> list[StreamResult]:
    out = []
    for rate in rates:
        res = run_stream(x, rate, opening_s, models)
        out.append(StreamResult(speaker, body, rate, round(body_s, 1), **res))
        log.info("speaker %s %-13s %5d Hz: peak stage %d, peak fused %.3f, alerts %d", speaker, body, rate,
                 res["peak_stage"], res["peak_fused"], res["alerts"])
    return out


def mandarin_calm(models: ModelRegistry, data_dir: Path, seed: int = 0,
                  rates: Sequence[int] = RATES) -> list[StreamResult]:
    """The held-out Mandarin false-alarm stream: AISHELL S0150's read sentences in manifest order, the clips up to
    ``MANDARIN_OPENING_S`` as the opening, the rest as a calm body."""
    root = data_dir / "speech" / "aishell-sample-dev"
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    n_open, t = 0, 0.0
    while n_open < len(rows) and t < MANDARIN_OPENING_S:
        t += float(rows[n_open]["duration_s"]) + GAP_S
        n_open += 1
    head = build_stream([root / r["path"] for r in rows[:n_open]], rng)
    tail = build_stream([root / r["path"] for r in rows[n_open:]], rng)
    return _score(np.concatenate([head, tail]), head.size / 16000, rows[0]["speaker"], MANDARIN_CALM,
                  tail.size / 16000, rates, models)


def evaluate(models: ModelRegistry, data_dir: Path, seed: int = 0, speakers: Sequence[str] | None = None,
             bodies: Sequence[str] = tuple(BODIES), rates: Sequence[int] = RATES) -> list[StreamResult]:
    root = data_dir / "speech" / "emodb"
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    out: list[StreamResult] = []
    for spk in speakers or sorted({r["speaker"] for r in rows}):
        own = [r for r in rows if r["speaker"] == spk]
        texts = sorted({r["text_code"] for r in own if r["emotion"] == "neutral"})
        opening = [r for r in own if r["emotion"] == "neutral" and r["text_code"] in texts[:7]]
        for body in bodies:
            emotions = BODIES[body]
            clips = [r for r in own if r["emotion"] in emotions and r not in opening]
            if not clips:
                continue
            clips = [clips[i] for i in rng.permutation(len(clips))]
            head = build_stream([root / r["path"] for r in opening], rng)
            tail = build_stream([root / r["path"] for r in clips], rng)
            out += _score(np.concatenate([head, tail]), head.size / 16000, spk, body, tail.size / 16000, rates,
                          models)
    return out


def table(results: list[StreamResult], label: str) -> str:
    lines = ["| params | body | rate | streams | mean body s | reach ≥1 | reach ≥2 | reach ≥3 | reach ≥4 | "
             "streams with an alert | median peak fused | median s to stage 2 | median chunk acoustic | "
             "p90 chunk acoustic | p90 chunk fused |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def med(v: list[float | None]) -> str:
        v = [u for u in v if u is not None]
        return f"{np.median(v):.3f}" if v else "–"

    for body in (*BODIES, MANDARIN_CALM):
        for rate in RATES:
            sub = [r for r in results if r.body == body and r.rate == rate]
            if not sub:
                continue
            n = len(sub)
            reach = [f"{sum(r.peak_stage >= lvl for r in sub) / n:.0%}" for lvl in (1, 2, 3, 4)]
            t2 = [r.first_stage2_s for r in sub if r.first_stage2_s is not None]
            lines.append(f"| {label} | {body} | {rate} | {n} | {np.mean([r.body_s for r in sub]):.1f} | "
                         + " | ".join(reach)
                         + f" | {sum(r.alerts > 0 for r in sub) / n:.0%} | {np.median([r.peak_fused for r in sub]):.3f}"
                         + f" | {f'{np.median(t2):.1f}' if t2 else '–'} | {med([r.median_acoustic for r in sub])}"
                         + f" | {med([r.p90_acoustic for r in sub])} | {med([r.p90_fused for r in sub])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=Path, action="append", default=None,
                    help="fusion params.json to evaluate (repeatable; default the shipped one)")
    ap.add_argument("--baseline-s", type=float, default=8.0)
    ap.add_argument("--json", type=Path, default=None, help="write every stream's result here")
    ap.add_argument("--results", type=Path, default=None,
                    help="write the tables here (below the file's hand-written head, kept up to RESULTS_MARK)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(baseline_seconds=args.baseline_s)
    models = ModelRegistry.load(settings, components=("acoustic", "fusion"))
    all_rows, tables = {}, []
    for params in args.params or [settings.models_dir / "fusion" / "params.json"]:
        if params.name != "params.json":
            raise SystemExit(f"--params must name a params.json, got {params}")
        models.fusion = DecisionModel.load(params.parent)
        res = evaluate(models, settings.data_dir) + mandarin_calm(models, settings.data_dir)
        label = params.parent.name if params.parent.name != "fusion" else "shipped"
        tables.append(table(res, label))
        print(tables[-1])
        all_rows[str(params)] = [r.__dict__ for r in res]
    if args.results:
        write_below_mark(args.results, RESULTS_MARK, "\n\n".join(tables))
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
