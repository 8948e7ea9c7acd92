"""Live ASR: end-of-utterance → transcript latency, and how many customer legs the worker processes keep up with.

A customer leg made of REAL speech: the AISHELL sample's test-half utterances (25 read sentences, one speaker,
see bench/bench_asr_real.py) in the 8 kHz telephone band, separated by 2.5–6 s of line noise (−60 dBFS), so the
leg is speech about half the time like a customer's.  Each leg is streamed in real time as 1 s windows
(the service's analysis windows) into an :class:`UtteranceSegmenter`; ended utterances go to an
:class:`AsrWorkerPool` (``--workers`` spawned processes, 1 decoder thread each).

Latency of an utterance = wall time its transcript is back − wall time its speech ended in the stream
(the VAD's speech end): it includes waiting for the end silence and the window boundary ("detect"), the queue,
and the decode.  ``--legs N`` streams N legs at once (each starts at a different utterance and with a different
phase inside the second); a run keeps up when the backlog does not grow (the last third's latency is not
above the first third's by more than a second) and p95 stays bounded.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_asr_live.py --legs 1 --seconds 0
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_asr_live.py --legs 4,8,12 --seconds 90
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_asr_real import load_split, telephone_8k  # noqa: E402

from pipelines.asr.segmenter import UtteranceSegmenter  # noqa: E402
from pipelines.asr.worker import AsrWorkerPool  # noqa: E402
from pipelines.settings import Settings  # noqa: E402

log = logging.getLogger("nuqi.bench.asr_live")
RATE = 8000


def build_leg(data: Path, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """The test-half utterances with noise gaps: (int16 leg at 8 kHz, [(start, end, text)])."""
    rng = np.random.default_rng(seed)
    pieces, spans, t = [], [], 0.0
    for row in load_split(data, "test"):
        gap = rng.uniform(2.5, 6.0)
        n = int(gap * RATE)
        pieces.append((rng.standard_normal(n) * 32768 * 10 ** (-60 / 20)).astype(np.int16))
        t += n / RATE
        audio, sr = sf.read(data / row["path"], dtype="float32")
        x = telephone_8k(audio)
        pieces.append(x)
        spans.append((round(t, 3), round(t + x.size / RATE, 3), row["text"]))
        t += x.size / RATE
    return np.concatenate(pieces), spans


def run(pool: AsrWorkerPool, leg: np.ndarray, n_legs: int, seconds: float) -> dict:
    total_s = leg.size / RATE
    seconds = seconds or total_s
    n_windows = int(seconds)
    rng = np.random.default_rng(n_legs)
    offsets = [int(rng.uniform(0, total_s)) if n_legs > 1 else 0 for _ in range(n_legs)]
    phases = [i / n_legs for i in range(n_legs)]  # legs' windows complete at different moments of the second
    segs = [UtteranceSegmenter(f"call-{i}", "customer") for i in range(n_legs)]
    lock = threading.Lock()
    records: list[dict] = []
    t0 = time.monotonic() + 1.0

    def done(fut, leg_i: int, emit_wall: float, speech_end_wall: float) -> None:
        res = fut.result()
        with lock:
            records.append({"leg": leg_i, "latency": time.monotonic() - speech_end_wall,
                            "detect": emit_wall - speech_end_wall, "decode": res.decode_s,
                            "audio_s": res.audio_s, "at": speech_end_wall - t0, "text": res.text})

    events = sorted((k + 1 + phases[i], i, k) for i in range(n_legs) for k in range(n_windows))
    vad_s = 0.0
    for due, i, k in events:
        now = time.monotonic() - t0
        if due > now:
            time.sleep(due - now)
        start = (offsets[i] + k) % int(total_s)
        window = leg[start * RATE:(start + 1) * RATE]
        c0 = time.perf_counter()
        utts = segs[i].push(window, RATE, float(k))  # call clock of this leg: window k covers [k, k+1)
        vad_s += time.perf_counter() - c0
        emit_wall = time.monotonic()
        for u in utts:
            speech_end_wall = t0 + phases[i] + u.speech_end  # window k arrives at t0 + phase + k + 1
            fut = pool.submit(u)
            fut.add_done_callback(lambda f, i=i, e=emit_wall, s=speech_end_wall: done(f, i, e, s))
    deadline = time.monotonic() + 120
    while pool.pending and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    lat = np.array([r["latency"] for r in records]) if records else np.zeros(1)
    first = [r["latency"] for r in records if r["at"] < seconds / 3]
    last = [r["latency"] for r in records if r["at"] >= 2 * seconds / 3]
    return {
        "legs": n_legs, "seconds": n_windows, "utterances": len(records),
        "latency_p50": round(float(np.percentile(lat, 50)), 2), "latency_p95": round(float(np.percentile(lat, 95)), 2),
        "latency_max": round(float(lat.max()), 2),
        "detect_p50": round(float(np.median([r["detect"] for r in records])), 2) if records else None,
        "decode_p50": round(float(np.median([r["decode"] for r in records])), 2) if records else None,
        "rtf_workers": round(sum(r["decode"] for r in records) / max(1e-9, sum(r["audio_s"] for r in records)), 3),
        "first_third_mean": round(float(np.mean(first)), 2) if first else None,
        "last_third_mean": round(float(np.mean(last)), 2) if last else None,
        "vad_cpu_share": round(vad_s / n_windows, 3),
        "load1_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--legs", default="1", help="comma list of concurrent legs to try")
    ap.add_argument("--seconds", type=float, default=0, help="stream length per run (0 = the whole leg once)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "asr_live.jsonl")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    leg, spans = build_leg(settings.data_dir / "speech" / "aishell-sample-dev")
    speech = sum(e - s for s, e, _ in spans)
    print(f"leg: {leg.size / RATE:.1f} s, {len(spans)} utterances, speech {speech:.1f} s "
          f"({speech / (leg.size / RATE):.0%})", flush=True)
    with AsrWorkerPool.from_settings(settings, workers=a.workers) as pool:
        for n in [int(x) for x in a.legs.split(",")]:
            res = run(pool, leg, n, a.seconds)
            res.update({"workers": a.workers,
                        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()})
            print(json.dumps(res, ensure_ascii=False), flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            with open(a.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(res, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
