"""Latency of the Chinese text-emotion model: load time and ms per 32-character utterance.

Single thread (onnxruntime intra_op_num_threads=1), batch of 1, the full ``TextEmotionModel.predict`` path
(tokenizer + int8 ONNX + calibrated softmax).  Writes bench/RESULTS_text.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text.py [--model-dir models/text-emotion] [--runs 500]
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text.py --compare OTHER_MODEL_DIR   # paired A/B, no file written

The host's speed drifts (bench/host_probe.py), so the table records the probe before and after, and ``--compare``
alternates blocks of 50 calls between the two artifacts and reports the median per-block ratio, which the
drift cancels out of. Everything below the ``<!-- history -->`` line of the results file is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.host_probe import probe  # noqa: E402
from pipelines.settings import get_settings  # noqa: E402
from pipelines.text.emotion import TextEmotionModel  # noqa: E402

# customer-service style utterances, each cut / repeated to exactly 32 characters
SEED_TEXTS = [
    "我已经打了三次电话了你们到底什么时候能给我解决这个问题啊真的太过分了",
    "你好我想查询一下我上个月的话费账单为什么比平时多了五十块钱麻烦帮我看看",
    "谢谢你的耐心解答问题已经解决了我很满意祝你工作顺利再见",
    "你们这个快递怎么回事一个礼拜了还没到我要投诉你们这个破服务",
    "请问你们的营业厅周末几点开门我想去办理一下宽带的续费业务",
    "我的银行卡被冻结了里面还有工资我现在很着急不知道该怎么办才好",
    "这已经是第四次了每次都说会处理结果什么都没有你们是在耍我吗",
    "麻烦帮我把套餐改成每月五十八元的那个流量多一点的谢谢",
]


def utterances(n_chars: int = 32) -> list[str]:
    out = []
    for t in SEED_TEXTS:
        while len(t) < n_chars:
            t += t
        out.append(t[:n_chars])
    return out


HISTORY = "<!-- history -->"


def timed_predicts(model: TextEmotionModel, texts: list[str], runs: int, offset: int = 0) -> tuple[list[float], list[float]]:
    """(wall ms, thread-CPU ms) of ``runs`` single-text ``predict`` calls."""
    lat, cpu = [], []
    for i in range(runs):
        c0, t0 = time.thread_time(), time.perf_counter()
        model.predict([texts[(offset + i) % len(texts)]])
        lat.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    return lat, cpu


def compare(dir_a: Path, dir_b: Path, blocks: int, block: int = 50) -> int:
    models = [TextEmotionModel.load(d, threads=1) for d in (dir_a, dir_b)]
    texts = utterances(32)
    for m in models:
        timed_predicts(m, texts, len(texts))
    ratios, med = [], ([], [])
    for b in range(blocks):
        order = (0, 1) if b % 2 == 0 else (1, 0)
        block_med = {}
        for i in order:
            _, cpu = timed_predicts(models[i], texts, block, offset=b)
            block_med[i] = statistics.median(cpu)
            med[i].append(block_med[i])
        ratios.append(block_med[1] / block_med[0])
    q1, q3 = np.percentile(ratios, [25, 75])
    print(f"A {dir_a}: median CPU {statistics.median(med[0]):.2f} ms; B {dir_b}: {statistics.median(med[1]):.2f} ms")
    print(f"B/A per-block ratio: median {statistics.median(ratios):.3f} (IQR {q1:.3f}-{q3:.3f}, {blocks} blocks of {block})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", type=Path, default=get_settings().models_dir / "text-emotion")
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS_text.md")
    ap.add_argument("--compare", type=Path, default=None, metavar="DIR",
                    help="paired A/B of --model-dir (A) against DIR (B): per-block CPU-time ratio B/A")
    ap.add_argument("--blocks", type=int, default=20, help="with --compare: blocks of 50 calls per artifact")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args.model_dir, args.compare, args.blocks)

    probe_before = probe()
    load_s = []
    for _ in range(args.loads):
        t = time.perf_counter()
        model = TextEmotionModel.load(args.model_dir, threads=1)
        load_s.append(time.perf_counter() - t)
    texts = utterances(32)
    n_tokens = [len(model._encode([t])[0][0]) for t in texts]
    for t in texts:  # warm-up
        model.predict([t])
    lat, cpu = timed_predicts(model, texts, args.runs)
    probe_after = probe()
    med, p90 = statistics.median(lat), float(np.percentile(lat, 90))
    cpu_med = statistics.median(cpu)
    cfg = json.loads((args.model_dir / "config.json").read_text(encoding="utf-8"))
    size_mb = sum(f.stat().st_size for f in args.model_dir.iterdir() if f.is_file()) / 1e6
    onnx_mb = (args.model_dir / "model.onnx").stat().st_size / 1e6
    load_med = statistics.median(load_s)
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = float("nan")
    print(f"load median {load_med * 1000:.0f} ms; predict median {med:.2f} ms, p90 {p90:.2f} ms, "
          f"CPU time median {cpu_med:.2f} ms "
          f"({np.mean(n_tokens):.1f} tokens incl. prefix/specials); artifact {size_mb:.1f} MB")

    md = f"""# Text-emotion latency (bench/bench_text.py)

Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text.py --runs {args.runs}`

| item | value |
|---|---|
| model | e5-small bottom {cfg.get('layers')} layers, vocab {cfg.get('vocab_size')} pieces, int8 dynamic ONNX |
| input | 32-character Mandarin utterance ({np.mean(n_tokens):.1f} tokens incl. `query: ` prefix, `<s>`, `</s>`), batch 1 |
| threads | onnxruntime intra_op_num_threads=1 |
| **predict() median** | **{med:.2f} ms** (target ≤ 5 ms) |
| predict() p90 | {p90:.2f} ms |
| predict() CPU time per call (median, thread CPU clock) | {cpu_med:.2f} ms (wall-clock above includes waiting for the shared CPU) |
| **load (median of {args.loads})** | **{load_med * 1000:.0f} ms** (target ≤ 2 s); first load {load_s[0] * 1000:.0f} ms |
| artifact | {size_mb:.1f} MB total, model.onnx {onnx_mb:.1f} MB |
| machine | {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1-min load average {load1:.2f} during the run (shared) |
| host probe (bench/host_probe.py) before / after | {probe_before:.1f} / {probe_after:.1f} ms |

predict() is the whole serving path: tokenizer (`tokenizers`), onnxruntime int8 session, temperature softmax.
"""
    old = args.results.read_text(encoding="utf-8") if args.results.exists() else ""
    if HISTORY in old:
        md += "\n" + old[old.index(HISTORY):]
    args.results.write_text(md, encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
