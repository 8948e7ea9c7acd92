"""Latency of a transcript turn in dialogue-context mode: the utterance model call plus the context model.

One thread, one turn at a time, real dialogue text: the CPED held-out series (TV 44/45) replayed turn by turn as
served (``TextEmotionModel.predict`` of the turn, then ``ContextEmotionModel.score`` with the memories of the
earlier turns, which are kept per call, so a turn costs one utterance-model call).  Reports wall and thread-CPU
ms per turn (median, p90, p99) for the utterance model alone, the context step alone and the whole turn, and the
context model's load time.  Writes bench/RESULTS_text_context.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text_context.py [--turns 2000]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.bench_text import utterances  # noqa: E402
from bench.host_probe import probe  # noqa: E402
from pipelines.settings import get_settings  # noqa: E402
from pipelines.text.context import WINDOW, ContextEmotionModel  # noqa: E402
from pipelines.text.emotion import TextEmotionModel  # noqa: E402
from training.fusion.cped import REPORT_TV, load_dialogues  # noqa: E402


def pct(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"{np.median(a):.2f} / {np.percentile(a, 90):.2f} / {np.percentile(a, 99):.2f}"


def run(utt, ctx, turns, limit: int) -> tuple[dict, dict, float]:
    """Replay ``turns`` ((dialogue, speaker, text), in order) as served; timings of the context-mode turns."""
    wall: dict[str, list[float]] = {"utt": [], "ctx": [], "turn": []}
    cpu: dict[str, list[float]] = {"utt": [], "ctx": [], "turn": []}
    history: list[dict] = []
    last_dialogue, n, n_chars = None, 0, 0
    for dialogue, speaker, text in turns:
        if n >= limit:
            break
        if dialogue != last_dialogue:
            history, last_dialogue = [], dialogue
        c0, t0 = time.thread_time(), time.perf_counter()
        probs = utt.predict([text])[0].probs
        c1, t1 = time.thread_time(), time.perf_counter()
        if history:
            res = ctx.score(speaker, text, probs, history)
            mem = res.memory
        else:
            mem = ctx.memory(speaker, text, probs)
        c2, t2 = time.thread_time(), time.perf_counter()
        context_mode = bool(history)
        history = [*history, mem][-WINDOW:]
        if context_mode:
            for d, a, b in ((wall, t0, t1), (cpu, c0, c1)):
                d["utt"].append((b - a) * 1e3)
            wall["ctx"].append((t2 - t1) * 1e3)
            wall["turn"].append((t2 - t0) * 1e3)
            cpu["ctx"].append((c2 - c1) * 1e3)
            cpu["turn"].append((c2 - c0) * 1e3)
            n += 1
            n_chars += len(text)
    return wall, cpu, n_chars / max(1, n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_text_context.md"))
    args = ap.parse_args(argv)
    models_dir = get_settings().models_dir
    utt = TextEmotionModel.load(models_dir / "text-emotion", threads=1)
    t0 = time.perf_counter()
    ctx = ContextEmotionModel.load(models_dir / "text-context")
    load_s = time.perf_counter() - t0
    turns = [(u.dialogue, u.speaker, u.text) for d in load_dialogues().values() if d[0].tv in REPORT_TV for u in d]
    probe_before = probe()
    wall, cpu, chars = run(utt, ctx, turns, args.turns)
    # the 32-character customer-service utterances of bench_text.py, as one long two-party call
    long_turns = [("bench", ("customer", "agent")[i % 2], t) for i, t in enumerate(utterances(32) * 250)]
    wall32, cpu32, _ = run(utt, ctx, long_turns, args.turns)
    probe_after = probe()
    md = [
        "# Dialogue-context text mode: latency per transcript turn",
        "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text_context.py"
        + (f" --turns {args.turns}" if args.turns != 2000 else "") + "`",
        "",
        f"Data: CPED valid, held-out series {'/'.join(REPORT_TV)}, the first {len(wall['turn'])} context-mode turns (a turn with at "
        f"least one earlier turn in its dialogue; mean {chars:.1f} characters), replayed in order. One thread, one "
        f"turn per call. Host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared); "
        f"host probe (bench/host_probe.py) before/after: {probe_before:.1f} / {probe_after:.1f} ms.",
        "",
        f"Context model load: {load_s * 1000:.0f} ms.",
        "",
        "| step | wall ms median / p90 / p99 | thread-CPU ms median / p90 / p99 |",
        "|---|---|---|",
        f"| utterance model (`TextEmotionModel.predict`, one text) | {pct(wall['utt'])} | {pct(cpu['utt'])} |",
        f"| context step (`ContextEmotionModel.score`) | {pct(wall['ctx'])} | {pct(cpu['ctx'])} |",
        f"| **whole turn in context mode** | **{pct(wall['turn'])}** | **{pct(cpu['turn'])}** |",
        f"| whole turn, 32-character utterances of `bench_text.py` (one two-party call) | {pct(wall32['turn'])} | "
        f"{pct(cpu32['turn'])} |",
        f"| of which the utterance model | {pct(wall32['utt'])} | {pct(cpu32['utt'])} |",
        "",
        "Budget: context mode ≤ 8 ms median per turn on one thread (issue 15).",
        "",
    ]
    args.out.write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
