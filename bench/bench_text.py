"""Latency of the Chinese text-emotion model: load time and ms per 32-character utterance.

Single thread (onnxruntime intra_op_num_threads=1), batch of 1, the full ``TextEmotionModel.predict`` path
(tokenizer + int8 ONNX + calibrated softmax).  Writes bench/RESULTS_text.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_text.py [--model-dir models/text-emotion] [--runs 500]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", type=Path, default=get_settings().models_dir / "text-emotion")
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS_text.md")
    args = ap.parse_args(argv)

    load_s = []
    for _ in range(args.loads):
        t = time.perf_counter()
        model = TextEmotionModel.load(args.model_dir, threads=1)
        load_s.append(time.perf_counter() - t)
    texts = utterances(32)
    n_tokens = [len(model._encode([t])[0][0]) for t in texts]
    for t in texts:  # warm-up
        model.predict([t])
    lat, cpu = [], []
    for i in range(args.runs):
        c0, t0 = time.thread_time(), time.perf_counter()
        model.predict([texts[i % len(texts)]])
        lat.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
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

predict() is the whole serving path: tokenizer (`tokenizers`), onnxruntime int8 session, temperature softmax.
"""
    args.results.write_text(md, encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
