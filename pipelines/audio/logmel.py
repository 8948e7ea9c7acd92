"""Log-mel input of the acoustic anger CNN member (:mod:`pipelines.audio.anger_cnn`).

40 mel bands, 100–3800 Hz, of 25 ms Hann frames every 10 ms at 8 kHz (FFT 256), in dB.  The stream
(:mod:`pipelines.audio.stream`) takes its frames from the centre 25 ms of its own 48 ms analysis frames, so the
member costs one 256-point FFT per frame and no extra state; training (``training/audio/mel_cache.py``) frames
whole clips with :func:`log_mel`.  :func:`cnn_windows` cuts frames into the CNN's 1 s windows and gain-normalises
each (minus the mean dB of its speech frames), the same code in training and serving.
"""
from __future__ import annotations

import numpy as np

SR = 8000
WIN = 200  # 25 ms
HOP = 80  # 10 ms
NFFT = 256
N_MEL = 40
FMIN, FMAX = 100.0, 3800.0
WINDOW_FRAMES = 100  # the CNN's window: 1 s
SPEECH_RANGE_DB = 35.0  # a frame within this of the window's loudest counts as speech
MIN_SPEECH_FRAMES = 15
MIN_PEAK_DB = -60.0


def _mel_fb() -> np.ndarray:
    f = np.fft.rfftfreq(NFFT, 1.0 / SR)

    def mel(h: float) -> float:
        return 2595.0 * np.log10(1.0 + h / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(mel(FMIN), mel(FMAX), N_MEL + 2) / 2595.0) - 1.0)
    m = np.zeros((f.size, N_MEL))
    for j in range(N_MEL):
        lo, c, hi = edges[j : j + 3]
        m[:, j] = np.maximum(0.0, np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)))
    return m


FILTERBANK = _mel_fb()
_HANN = np.hanning(WIN)


def frames_log_mel(frames: np.ndarray) -> np.ndarray:
    """(n, N_MEL) log-mel energies in dB of (n, WIN) frames of 8 kHz audio."""
    p = np.abs(np.fft.rfft(frames * _HANN, NFFT)) ** 2
    return 10.0 * np.log10(np.maximum(p @ FILTERBANK, 1e-10))


def log_mel(x: np.ndarray) -> np.ndarray:
    """(frames, N_MEL) log-mel of a whole 8 kHz signal (frames every HOP samples from its first sample)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    return frames_log_mel(np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP])


def cnn_windows(m: np.ndarray, hop: int = WINDOW_FRAMES) -> np.ndarray:
    """(n, WINDOW_FRAMES, N_MEL) float32 gain-normalised windows with speech (≥ ``MIN_SPEECH_FRAMES`` frames within
    ``SPEECH_RANGE_DB`` of the window's loudest, which must reach ``MIN_PEAK_DB``), one every ``hop`` frames; a
    shorter input is padded with its quietest value to one window."""
    w_len = WINDOW_FRAMES
    if len(m) < w_len:
        m = np.pad(m, ((0, w_len - len(m)), (0, 0)), constant_values=float(m.min()) if m.size else -100.0)
    out = []
    for s in range(0, len(m) - w_len + 1, hop):
        w = m[s : s + w_len]
        e = 10.0 * np.log10(np.mean(10.0 ** (w / 10.0), axis=1) + 1e-12)
        sp = e > e.max() - SPEECH_RANGE_DB
        if sp.sum() < MIN_SPEECH_FRAMES or e.max() < MIN_PEAK_DB:
            continue
        out.append((w - w[sp].mean()) / 10.0)
    return np.asarray(out, dtype=np.float32).reshape(-1, w_len, N_MEL)
