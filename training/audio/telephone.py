"""Seeded telephone-channel simulation for training and evaluation (8 kHz).

One *call* = one speaker: every clip of a speaker goes through the same channel, as in a real call —
line gain uniform in ±12 dB, noise at a fixed absolute level chosen for 10–30 dB SNR against the
speaker's typical active level (so a shouted clip has a better SNR than a calm one, as on a real line),
300–3400 Hz band-pass (4th-order Butterworth), hard clipping at full scale, then a codec round trip
through sox: G.711 µ-law or A-law, GSM 06.10 or AMR-NB (one per call, seeded).
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

SR = 8000
CODECS = ("ul", "al", "gsm", "amr-nb")
_SOS = butter(4, [300.0, 3400.0], btype="bandpass", fs=SR, output="sos")


@dataclass(frozen=True)
class Channel:
    gain_db: float
    snr_db: float
    codec: str
    seed: int


def channel_for(key: str, seed: int = 0) -> Channel:
    """The seeded channel of one call (``key`` = speaker id, or the clip id where speakers are unknown)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(h)
    return Channel(float(rng.uniform(-12, 12)), float(rng.uniform(10, 30)), CODECS[int(rng.integers(len(CODECS)))],
                   int(h % 2**31))


def active_level_db(x: np.ndarray, sr: int = SR) -> float:
    """Mean power (dBFS) of the 20 ms frames within 30 dB of the loudest frame (a rough active speech level)."""
    n = int(0.02 * sr)
    m = len(x) // n
    if m == 0:
        return -100.0
    p = np.mean(x[: m * n].reshape(m, n) ** 2, axis=1) + 1e-12
    db = 10 * np.log10(p)
    return float(10 * np.log10(np.mean(p[db > db.max() - 30])))


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    pink = lfilter([1.0], [1.0, -0.95], rng.standard_normal(n))
    v = w / w.std() + pink / max(pink.std(), 1e-9)
    return v / v.std()


def codec(x: np.ndarray, name: str) -> np.ndarray:
    """Encode + decode 8 kHz float audio with sox (``name`` is a sox file type: ul, al, gsm, amr-nb)."""
    pcm = (np.clip(x, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()
    raw = ["-t", "raw", "-r", str(SR), "-e", "signed", "-b", "16", "-c", "1"]
    enc = subprocess.run(["sox", "-V1", *raw, "-", "-t", name, "-r", str(SR), "-c", "1", "-"], input=pcm,
                         capture_output=True, check=True).stdout
    dec = subprocess.run(["sox", "-V1", "-t", name, "-r", str(SR), "-c", "1", "-", *raw, "-"], input=enc,
                         capture_output=True, check=True).stdout
    y = np.frombuffer(dec, dtype="<i2").astype(np.float64) / 32768.0
    if y.size < x.size:
        y = np.concatenate([y, np.zeros(x.size - y.size)])
    return y[: x.size]


def simulate(x8k: np.ndarray, ch: Channel, ref_level_db: float, clip_seed: int) -> np.ndarray:
    """One clip (8 kHz float) through the call's channel; ``ref_level_db`` = the speaker's active level."""
    rng = np.random.default_rng([ch.seed, clip_seed])
    g = 10 ** (ch.gain_db / 20)
    y = x8k * g
    noise_db = ref_level_db + ch.gain_db - ch.snr_db
    y = y + _noise(y.size, rng) * 10 ** (noise_db / 20)
    y = sosfilt(_SOS, y)
    return codec(np.clip(y, -1.0, 1.0), ch.codec)
