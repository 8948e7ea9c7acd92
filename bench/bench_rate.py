"""CPU cost of the speech-rate detector, and of the whole per-channel stream, per 1 s chunk.

Audio: the 50 AISHELL utterances (real Mandarin read speech, ../shared/data/speech/aishell-sample-dev)
back to back, 8 kHz telephone band (service resampler + 300-3400 Hz) or 16 kHz, cut into 1 s chunks.
``rate`` = :meth:`NucleusDetector.process` + :meth:`RateWindow.push` / ``rate`` on the per-frame
inputs the stream hands it (recorded once), ``stream`` = the whole :meth:`SpeakerStream.process`.
Time = ``time.process_time()`` per chunk, mean over the chunks, median (min) over repeats.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_rate.py --repeats 7
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.audio.rate import NucleusDetector, RateWindow  # noqa: E402
from pipelines.audio.stream import HOP_S, SpeakerStream  # noqa: E402
from training.audio import eval_rate_real as E  # noqa: E402


class _Recorder:
    """Stands between the stream and its detector to keep the inputs it receives (bench only)."""

    def __init__(self, det: NucleusDetector) -> None:
        self.det = det
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def process(self, env, voiced, floor):
        self.calls.append((env.copy(), voiced.copy(), floor.copy()))
        return self.det.process(env, voiced, floor)


def _audio(sr: int) -> np.ndarray:
    parts = []
    for c in E.aishell_clips():
        x, fs = E._read(str(c.path))
        parts.append(E.channel(x, fs, "8k" if sr == 8000 else "16k")[0])
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    print(f"loadavg {os.getloadavg()}")
    print("| rate | chunks x repeats | rate detector + window ms/chunk median (min) "
          "| whole SpeakerStream ms/chunk median (min) |")
    print("|---|---|---|---|")
    for sr in (8000, 16000):
        x = _audio(sr)
        chunks = [x[i : i + sr] for i in range(0, len(x), sr)]
        s = SpeakerStream(sr)
        rec = _Recorder(s._det)
        s._det = rec
        for c in chunks:
            s.process(c)
        calls = rec.calls
        t_rate, t_stream = [], []
        for _ in range(a.repeats):
            det, win = NucleusDetector(params=s._rate_params), RateWindow(window_frames=s._rate_params.window_frames)
            t0 = time.process_time()
            for env, voiced, floor in calls:
                nu = det.process(env, voiced, floor)
                win.push(voiced, nu)
                win.rate(HOP_S, s._rate_params.min_speech_frames)
            t_rate.append((time.process_time() - t0) / len(chunks) * 1e3)
            st = SpeakerStream(sr)
            t0 = time.process_time()
            for c in chunks:
                st.process(c)
            t_stream.append((time.process_time() - t0) / len(chunks) * 1e3)
        print(f"| {sr} Hz | {len(chunks)} x {a.repeats} | {np.median(t_rate):.3f} ({min(t_rate):.3f}) "
              f"| {np.median(t_stream):.2f} ({min(t_stream):.2f}) |")
    print(f"loadavg {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
