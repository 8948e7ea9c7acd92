"""Throughput of QA batch scoring (``nuqi score``) on stereo 8 kHz calls, and the ASR real-time factor.

    .venv/bin/python bench/bench_batch.py [--copies 5] [--workers 2] [--asr] [--profile] [--write]

The two stereo 8 kHz sample calls (call_escalating_8k 74.4 s + call_calm_8k 48.8 s, with their
transcript sidecars) are replicated ``--copies`` times into a temporary folder and scored:

* ``inline``: one process, models loaded before the clock starts (steady state, 1 core);
  once without HTML pages, once with them, once without transcripts (audio only);
* ``pool``: ``--workers`` processes (spawn + model load included in the wall time);
* ``--asr``: the calm call without its sidecar, ``--asr on`` (Whisper base, int8, 1 thread per
  channel): ASR real-time factor = ASR seconds / audio seconds;
* ``--profile``: cProfile of one call (inline, HTML on) grouped by module.

"× real time per core" = audio seconds / the CPU seconds the scoring processes spent (``BatchProgress.cpu_s``,
``time.process_time`` around each call), so other jobs on a shared machine do not distort it; "wall" figures
are what this (possibly busy) machine delivered;
with ``--write`` the results are appended to ``bench/RESULTS_batch.md``.  Benchmarks never run in
the test suite.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.settings import get_settings  # noqa: E402

SAMPLES = ("call_escalating_8k", "call_calm_8k")
C_LIBS = {"numpy": ("numpy", "ufunc", "ndarray", "pocketfft"), "scipy": ("scipy", "sigtools", "_linear_filter"),
          "matplotlib/PIL": ("ft2font", "matplotlib", "Imaging", "_path", "_image", "backend_agg"),
          "onnxruntime": ("onnxruntime", "InferenceSession", "run_with"), "tokenizers": ("tokenizers", "encode"),
          "soxr": ("soxr",), "json": ("json", "encode_basestring")}


def make_inputs(root: Path, copies: int, sidecars: bool = True) -> Path:
    d = root / ("calls" if sidecars else "calls_audio_only")
    d.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        for name in SAMPLES:
            shutil.copy(REPO / "sample_audio" / f"{name}.wav", d / f"{name}_{i:03d}.wav")
            if sidecars:
                shutil.copy(REPO / "sample_audio" / f"{name}.json", d / f"{name}_{i:03d}.json")
    return d


def run(label: str, inputs: Path, out: Path, **kw) -> dict:
    from pipelines.batch.score import run_batch

    t0 = time.perf_counter()
    res = run_batch([inputs], out, force=True, **kw)
    wall = time.perf_counter() - t0
    p = res.progress
    failed = [r for r in res.records if not r.ok]
    assert not failed, failed[:2]
    row = {"config": label, "calls": p.scored, "audio_s": round(p.audio_s, 1), "wall_s": round(wall, 2),
           "busy_s": round(p.busy_s, 2), "cpu_s": round(p.cpu_s, 2), "x_rt_wall": round(p.audio_s / wall, 1),
           "x_rt_per_core": round(p.audio_s / p.cpu_s, 1) if p.cpu_s else None,
           "s_per_audio_hour_per_core": round(3600 * p.cpu_s / p.audio_s, 1) if p.audio_s else None}
    print(json.dumps(row), flush=True)
    return row


def asr_rtf(models, tmp: Path) -> dict | None:
    from pipelines.batch.score import asr_model_dir, run_batch
    from pipelines.batch.scorer import asr_available

    settings = get_settings()
    reason = asr_available(asr_model_dir(settings))
    if reason:
        print(f"ASR skipped: {reason}")
        return {"config": "asr", "skipped": reason}
    d = tmp / "asr_in"
    d.mkdir()
    shutil.copy(REPO / "sample_audio" / "call_calm_8k.wav", d / "call_calm_8k.wav")
    t0 = time.perf_counter()
    run_batch([d], tmp / "asr_out", models=models, asr="on", html=False)  # includes loading Whisper once
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_batch([d], tmp / "asr_out", models=models, asr="on", html=False, force=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    payload = json.loads((tmp / "asr_out" / "calls" / "call_calm_8k.json").read_text(encoding="utf-8"))
    audio = res.records[0].duration_s
    asr_s = payload["timing_s"]["asr"]
    row = {"config": "asr on (calm call, 2 channels transcribed separately)", "audio_s": audio,
           "asr_s": round(asr_s, 2), "asr_rtf": round(asr_s / audio, 3),
           "asr_rtf_per_channel_audio": round(asr_s / (2 * audio), 3),
           "total_wall_s": round(wall, 2), "total_cpu_s": round(cpu, 2),
           "x_rt_per_core_with_asr (CPU)": round(audio / cpu, 2), "asr_threads": 1,
           "first_run_incl_whisper_load_s": round(first, 2), "utterances": len(payload["utterances"])}
    print(json.dumps(row, ensure_ascii=False), flush=True)
    return row


def profile_one(models, tmp: Path) -> str:
    from pipelines.batch.records import ScoreOptions
    from pipelines.batch.score import collect_jobs
    from pipelines.batch.scorer import Scorer

    job = collect_jobs([REPO / "sample_audio" / "call_escalating_8k.wav"])[0]
    scorer = Scorer(models, ScoreOptions(asr="off", html=True))
    scorer.score(job)  # warm (matplotlib import, font cache)
    prof = cProfile.Profile()
    prof.enable()
    scorer.score(job)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # tottime
    by_mod: dict[str, float] = defaultdict(float)
    for (file, _line, fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        if "/pipelines/" in file:
            key = "pipelines/" + file.split("/pipelines/", 1)[1]
        elif "site-packages/" in file:
            key = file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif file == "~":  # C function: attribute to its library by name
            key = next((f"{lib} (C)" for lib, marks in C_LIBS.items() if any(m in fn for m in marks)),
                       "other C builtins")
        else:
            key = "python stdlib"
        by_mod[key] += tt
    lines = ["| module (self time) | s | % |", "|---|---|---|"]
    for k, v in sorted(by_mod.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"| {k} | {v:.3f} | {100 * v / total:.1f} |")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(
        "scorer.py|analyze.py|session.py|stream.py|engine.py|report.py|emotion.py|pitch.py", 18)
    cum = [ln for ln in buf.getvalue().splitlines() if "/work/" in ln or "ncalls" in ln]
    return ("\n".join(lines) + f"\n\nTotal profiled self time {total:.2f} s for 74.4 s of stereo audio "
            "(cProfile overhead included).\n\n```\n" + "\n".join(cum[:22]) + "\n```\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=5, help="copies of each sample call (5 → 10 calls, 10.3 min)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--asr", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--write", action="store_true", help="append the results to bench/RESULTS_batch.md")
    args = ap.parse_args()

    from pipelines.registry import ModelRegistry

    settings = get_settings()
    t0 = time.perf_counter()
    models = ModelRegistry.load(settings)
    load_s = time.perf_counter() - t0
    failed = {k: v.error for k, v in models.status.items() if not v.loaded}
    if failed:
        raise SystemExit(f"models missing: {failed}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="nuqi-bench-batch-") as tmp_s:
        tmp = Path(tmp_s)
        calls = make_inputs(tmp, args.copies)
        audio_only = make_inputs(tmp, args.copies, sidecars=False)
        # warm-up: imports, matplotlib font cache, first-call allocations
        run("warm-up (ignored)", calls, tmp / "warm", models=models, asr="off")
        rows.append(run("inline, sidecar transcripts, no HTML", calls, tmp / "o1", models=models, asr="off",
                        html=False))
        rows.append(run("inline, sidecar transcripts, HTML", calls, tmp / "o2", models=models, asr="off"))
        rows.append(run("inline, audio only (no transcript), no HTML", audio_only, tmp / "o3", models=models,
                        asr="off", html=False))
        rows.append(run(f"pool of {args.workers} workers (spawn + model load in wall), HTML", calls, tmp / "o4",
                        settings=settings, workers=args.workers, asr="off"))
        asr_row = asr_rtf(models, tmp) if args.asr else None
        prof = profile_one(models, tmp) if args.profile else None
    if args.write:
        write_results(rows, asr_row, prof, args, load_s)


def write_results(rows: list[dict], asr_row: dict | None, prof: str | None, args: argparse.Namespace,
                  load_s: float) -> None:
    path = REPO / "bench" / "RESULTS_batch.md"
    head = "" if path.exists() else "# QA batch scoring benchmark (`bench/bench_batch.py`)\n\n"
    load = os.getloadavg()
    out = [head, f"## Run {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n",
           f"Command: `.venv/bin/python bench/bench_batch.py --copies {args.copies} --workers {args.workers}"
           f"{' --asr' if args.asr else ''}{' --profile' if args.profile else ''} --write`  \n"
           f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared; load average "
           f"{load[0]:.1f}/{load[1]:.1f} at the end), Python {platform.python_version()}, OMP_NUM_THREADS=1. "
           f"Model registry load: {load_s:.1f} s (not in the inline figures).\n",
           "| config | calls | audio s | wall s | worker wall s | worker CPU s | × real time (wall) | "
           "× real time per core (CPU) | CPU s per audio hour |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['config']} | {r['calls']} | {r['audio_s']} | {r['wall_s']} | {r['busy_s']} | {r['cpu_s']} | "
                   f"{r['x_rt_wall']} | {r['x_rt_per_core']} | {r['s_per_audio_hour_per_core']} |")
    out.append("\nTarget: ≥ 150× real time per core (an hour of calls in ≤ 24 s per core), without ASR.\n")
    if asr_row:
        out.append("ASR: `" + json.dumps(asr_row, ensure_ascii=False) + "`\n")
    if prof:
        out.append("### Where the time goes (one call, inline, HTML on)\n\n" + prof)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
