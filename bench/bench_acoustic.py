"""CPU cost of the acoustic pipeline vs openSMILE eGeMAPSv02 functionals, plus F0 accuracy vs pyin.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_acoustic.py speed
    .venv/bin/python bench/bench_acoustic.py pitch
    .venv/bin/python bench/bench_acoustic.py vad

speed: 60 s of real speech (EmoDB + TW clips, concatenated) cut into 1 s chunks; per chunk
  our full per-channel pipeline (SpeakerStream.process + SpeakerBaseline.update/delta +
  AcousticAngerModel.score) and, in the same run on the same chunks, openSMILE eGeMAPSv02
  Functionals (opensmile.Smile.process_signal).  Median over repeats of the mean ms/chunk;
  os.getloadavg() is recorded because other jobs share the machine.
vad: frame speech/pause accuracy against EmoDB's syllable labels (complete clips), our energy
  VAD vs webrtcvad mode 2, and webrtcvad's cost.
pitch: per-frame F0 of our YIN tracker (streamed in 1 s chunks) vs librosa.pyin (16 kHz
  original, frame 1024, hop 10 ms, 60–500 Hz) on 40 EmoDB + 40 TW clips; our side at 16 kHz
  and at 8 kHz telephone band.  Reports median |error| in semitones on frames both call
  voiced, gross error rate (>20 % ≈ 3.2 st), and voicing decision error.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.audio import stream as S  # noqa: E402
from pipelines.audio.anger_model import AcousticAngerModel  # noqa: E402
from pipelines.audio.baseline import SpeakerBaseline  # noqa: E402
from pipelines.settings import get_settings  # noqa: E402
from training.audio.eval_rate import telephone  # noqa: E402


def _clips(n_em: int, n_tw: int, seed: int = 0) -> list[Path]:
    root = get_settings().data_dir / "speech"
    rnd = random.Random(seed)
    em = sorted((root / "emodb" / "wav").glob("*.wav"))
    tw = sorted((root / "tw-mandarin-valence" / "wav").glob("*/*.wav"))
    return rnd.sample(em, n_em) + rnd.sample(tw, n_tw)


def _audio(seconds: float = 60.0) -> np.ndarray:
    xs, tot = [], 0
    for p in _clips(40, 40):
        x, fs = sf.read(p, dtype="float64")
        xs.append(x)
        tot += len(x)
        if tot >= seconds * 16000:
            break
    return np.concatenate(xs)[: int(seconds * 16000)]


def speed(repeats: int, no_cnn: bool = False) -> None:
    import opensmile

    x16 = _audio()
    path = get_settings().models_dir / "acoustic-anger" / "model.json"
    # no_cnn: the cue networks alone (the model before its CNN member), for an A/B on the same host
    model = AcousticAngerModel.load(path, cnn=not no_cnn)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    load_before = os.getloadavg()
    print(f"loadavg before: {load_before}")
    rows = []
    for sr in (8000, 16000):
        x = telephone(x16) if sr == 8000 else x16
        chunks = [x[i : i + sr].astype(np.float32) for i in range(0, len(x) - sr + 1, sr)]
        ours, osm = [], []
        for _ in range(repeats):
            st = S.SpeakerStream(sr)
            b = SpeakerBaseline(baseline_seconds=15.0)
            t0 = time.process_time()
            for c in chunks:
                f = st.process(c)
                b.update(f)
                model.score(f, b.delta(f))
            ours.append((time.process_time() - t0) / len(chunks) * 1e3)
            t0 = time.process_time()
            for c in chunks:
                smile.process_signal(c, sr)
            osm.append((time.process_time() - t0) / len(chunks) * 1e3)
        o, s = statistics.median(ours), statistics.median(osm)
        rows.append((sr, len(chunks), o, min(ours), s, min(osm), s / o))
    load_after = os.getloadavg()
    print(f"loadavg after: {load_after}")
    print("| rate | chunks × repeats | nuqi full pipeline ms/chunk (median, min) | openSMILE eGeMAPSv02 functionals ms/chunk (median, min) | speed-up |")
    print("|---|---|---|---|---|")
    for sr, n, o, omin, s, smin, r in rows:
        print(f"| {sr} Hz | {n} × {repeats} | {o:.2f} ({omin:.2f}) | {s:.1f} ({smin:.1f}) | {r:.1f}× |")


def _frames(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame final F0 and voicing of our tracker, streamed in 1 s chunks."""
    st = S.SpeakerStream(sr)
    rec_f0: list[np.ndarray] = []
    rec_v: list[np.ndarray] = []
    apply = st._guard.apply

    def spy(f0, ap, dp, voiced, cfg):
        out = apply(f0, ap, dp, voiced, cfg)
        rec_f0.append(out)
        rec_v.append(voiced.copy())
        return out

    st._guard.apply = spy  # observe per-frame values of the real tracker
    for i in range(0, len(x), sr):
        st.process(x[i : i + sr])
    return np.concatenate(rec_f0), np.concatenate(rec_v)


def pitch(n: int) -> None:
    import librosa

    res: dict[str, dict[int, list]] = {}
    for p in _clips(n, n, seed=1):
        ds = "EmoDB" if "emodb" in str(p) else "TW"
        x, fs = sf.read(p, dtype="float64")
        ref, rv, _ = librosa.pyin(x, fmin=60, fmax=500, sr=fs, frame_length=1024, hop_length=160)
        for sr in (8000, 16000):
            y = telephone(x) if sr == 8000 else x
            f0, v = _frames(y, sr)
            # our frame i is centred at i*10 ms + 24 ms (+ 31 samples FIR delay at 16 kHz input)
            t = np.arange(len(f0)) * 0.01 + 0.024 + (31 / 16000 if sr == 16000 else 0.0)
            k = np.clip(np.round(t / 0.01).astype(int), 0, len(ref) - 1)
            both = v & rv[k]
            err = 12 * np.abs(np.log2(f0[both] / ref[k][both]))
            res.setdefault(ds, {}).setdefault(sr, []).append((err, np.mean(v != rv[k])))
    print("| data | our rate | clips | frames both voiced | median abs err (st) | gross err >20% | voicing decision err |")
    print("|---|---|---|---|---|---|---|")
    for ds, by in res.items():
        for sr, lst in by.items():
            err = np.concatenate([e for e, _ in lst])
            vde = float(np.mean([v for _, v in lst]))
            print(f"| {ds} | {sr} | {len(lst)} | {err.size} | {np.median(err):.2f} | {100 * np.mean(err > 3.16):.1f} % | "
                  f"{100 * vde:.1f} % |")


def vad() -> None:
    """Frame-level speech/pause accuracy vs EmoDB syllable labels, ours vs webrtcvad, and cost."""
    import webrtcvad

    from training.audio.eval_rate import emodb_items, read_labsilb

    items = [i for i in emodb_items() if i.complete]
    res: dict[str, list] = {}
    cost: dict[str, list] = {}
    for sr in (8000, 16000):
        for it in items:
            x16, _ = sf.read(it.path, dtype="float64")
            x = telephone(x16) if sr == 8000 else x16
            segs = [sg for sg in read_labsilb(it.path.parent.parent / "labsilb" / (it.path.stem + ".labsilb"))]
            # ours: per-frame speech flags of the real stream (frame i centred at i*10 ms + 24 ms)
            st = S.SpeakerStream(sr)
            flags: list[np.ndarray] = []
            proc = st._vad.process

            def spy(db, _proc=proc, _flags=flags):
                out = _proc(db)
                _flags.append(out[0].copy())
                return out

            st._vad.process = spy
            t0 = time.process_time()
            for i in range(0, len(x), sr):
                st.process(x[i : i + sr])
            ours = np.concatenate(flags)
            t_ours = np.arange(len(ours)) * 0.01 + 0.024
            # webrtcvad (mode 2) on 30 ms frames of 16-bit PCM
            v = webrtcvad.Vad(2)
            pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
            fl = int(0.03 * sr)
            t0 = time.process_time()
            wv = np.array([v.is_speech(pcm[i : i + fl].tobytes(), sr) for i in range(0, len(pcm) - fl + 1, fl)])
            cost.setdefault(f"webrtcvad@{sr}", []).append((time.process_time() - t0) / (len(x) / sr))
            t_w = np.arange(len(wv)) * 0.03 + 0.015
            for name, flags_, tt in (("energy VAD (ours)", ours, t_ours), ("webrtcvad mode 2", wv, t_w)):
                truth = np.zeros(len(tt), dtype=bool)
                for b, e, lab in segs:
                    if lab != ".":
                        truth |= (tt >= b) & (tt < e)
                inside = tt < 2.0
                res.setdefault(f"{name}@{sr}", []).append((flags_[inside], truth[inside]))
    print("| VAD @ rate | clips | frame accuracy vs labelled syllables | speech recall | pause (non-speech) recall |")
    print("|---|---|---|---|---|")
    for k, lst in res.items():
        p = np.concatenate([a for a, _ in lst])
        t = np.concatenate([b for _, b in lst])
        print(f"| {k} | {len(lst)} | {100 * np.mean(p == t):.1f} % | {100 * np.mean(p[t]):.1f} % | {100 * np.mean(~p[~t]):.1f} % |")
    for k, v in cost.items():
        print(f"{k}: {1e3 * statistics.median(v):.3f} ms CPU per 1 s of audio (the energy VAD is part of the pipeline figure)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["speed", "pitch", "vad"])
    ap.add_argument("--no-cnn", action="store_true", help="speed: without the anger model's CNN member")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=40, help="clips per corpus for pitch")
    a = ap.parse_args()
    {"speed": lambda: speed(a.repeats, a.no_cnn), "pitch": lambda: pitch(a.n), "vad": vad}[a.what]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
