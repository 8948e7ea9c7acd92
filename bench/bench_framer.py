"""CPU cost of the ingest framer (pipelines/ingest) on the real sample call, and the size of its stored state.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_framer.py

Feeds sample_audio/call_escalating_8k.wav (74.4 s, stereo 8 kHz) as 20 ms stereo frames three ways: framer kept
in memory; JSON state saved and restored after every frame (a stateless worker per frame); state saved only
when a window completed (a sticky connection that persists once per second).
"""
from __future__ import annotations

import json
import time
import wave

import numpy as np

from pipelines.ingest import CallFramer
from pipelines.settings import REPO_ROOT


def main() -> None:
    with wave.open(str(REPO_ROOT / "sample_audio" / "call_escalating_8k.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    n = len(x) // 160 * 160
    frames = n // 160
    for mode in ("memory", "state-per-frame", "state-per-window"):
        f, sizes = CallFramer(), []
        t = time.perf_counter()
        for s, i in enumerate(range(0, n, 160)):
            res = f.push_stereo(x[i:i + 160], ("agent", "customer"), seq=s)
            if mode == "state-per-frame" or (mode == "state-per-window" and res.windows):
                js = json.dumps(f.state_dict())
                sizes.append(len(js))
                if mode == "state-per-frame":
                    f = CallFramer.from_state(json.loads(js))
        dt = time.perf_counter() - t
        size = f" state mean {np.mean(sizes) / 1e3:.1f} KB, max {max(sizes) / 1e3:.1f} KB" if sizes else ""
        print(f"{mode:17s} {frames} stereo 20 ms frames: {dt / frames * 1e6:6.1f} us/frame{size}")


if __name__ == "__main__":
    main()
