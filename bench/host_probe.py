"""Host-speed probe: a fixed numpy + pure-Python workload, so that a figure can be read against the host's state.

This VM's host drifts by up to 1.6x within minutes (bench/RESULTS_load.md, 2026-12-02). Run the probe before and
after a benchmark and write its figure next to the result; compare figures only when the probes agree (or use
bench/bench_ab.py, which cancels the drift).

    .venv/bin/python bench/host_probe.py            # prints "probe 93.1 ms (best of 3)"

One repetition: 200 x (rfft of 40 Hann-windowed 256-sample frames + sum(i*i for i in range(2000))).
Lower is faster; 90-98 ms and 138-157 ms were both seen on the same 2-core AMD EPYC VM.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def probe_once() -> float:
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((40, 256)).astype(np.float32) * np.hanning(256).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(200):
        np.fft.rfft(frames, axis=1)
        sum(i * i for i in range(2000))
    return (time.perf_counter() - t0) * 1000.0


def probe(repeats: int = 3) -> float:
    """Best of ``repeats`` runs, in milliseconds."""
    return min(probe_once() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"probe {probe(args.repeats):.1f} ms (best of {args.repeats})")


if __name__ == "__main__":
    main()
