"""Spectral effort cues from the long-term average spectrum (LTAS) of speech frames.

* ``hf_ratio``: energy 1–3.8 kHz / energy 0.1–3.8 kHz.  Raised vocal effort (anger) flattens
  the glottal spectrum and raises it; it is gain-invariant, unlike absolute loudness.
* ``spectral_tilt_db``: least-squares slope of octave-band levels (125 Hz … 3.8 kHz) against
  octave number, in dB/octave (less negative = flatter = more effort).
Both use only the 8 kHz telephone band so 8 kHz and 16 kHz input give comparable values.
"""
from __future__ import annotations

import numpy as np

NFFT = 384  # 48 ms frame at 8 kHz, 20.8 Hz bins (the F0 frame; its FFT is shared with YIN)
SR = 8000
OCTAVE_EDGES = [(125, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 3800)]
_FREQS = np.fft.rfftfreq(NFFT, 1.0 / SR)
_HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(NFFT) / NFFT)  # periodic Hann


def _band(lo: float, hi: float) -> np.ndarray:
    return ((_FREQS >= lo) & (_FREQS < hi)).astype(float)


# columns: low (100–1000), high (1000–3800), nucleus band (300–2500), 5 octave bands
BANDS = np.stack(
    [_band(100, 1000), _band(1000, 3800), _band(300, 2500)] + [_band(a, b) for a, b in OCTAVE_EDGES], axis=1
)
_OCT_X = np.arange(len(OCTAVE_EDGES), dtype=float)
_OCT_X -= _OCT_X.mean()


def hann_power(rect_spec: np.ndarray) -> np.ndarray:
    """Hann-windowed power spectrum, shape (n_frames, NFFT // 2 + 1).

    ``rect_spec`` is rfft(frame, NFFT) of the un-windowed frame; a periodic Hann window is
    applied in the frequency domain (H_k = X_k/2 - (X_{k-1} + X_{k+1})/4), saving an FFT.
    """
    x = rect_spec
    h = 0.5 * x
    h[:, 1:-1] -= 0.25 * (x[:, :-2] + x[:, 2:])
    h[:, 0] -= 0.5 * x[:, 1].real
    h[:, -1] -= 0.5 * x[:, -2].real
    return h.real**2 + h.imag**2


def band_energies(rect_spec: np.ndarray) -> np.ndarray:
    """Hann-windowed power summed into BANDS, shape (n_frames, 8)."""
    return hann_power(rect_spec) @ BANDS


# --------------------------------------------------------------------------- voice-quality spectra
N_MEL = 20
N_CEP = 13  # c0..c12
_LO_HZ, _HI_HZ = 100.0, 3800.0


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_matrix() -> np.ndarray:
    edges_mel = np.linspace(_mel(_LO_HZ), _mel(_HI_HZ), N_MEL + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    m = np.zeros((_FREQS.size, N_MEL))
    for j in range(N_MEL):
        lo, c, hi = edges[j], edges[j + 1], edges[j + 2]
        up = (_FREQS - lo) / (c - lo)
        down = (hi - _FREQS) / (hi - c)
        m[:, j] = np.maximum(0.0, np.minimum(up, down))
        if m[:, j].sum() == 0.0:  # a band narrower than a bin: take the nearest bin
            m[int(np.argmin(np.abs(_FREQS - c))), j] = 1.0
    return m


MEL = _mel_matrix()
# orthonormal DCT-II rows for c0..c12 over the N_MEL log-mel energies (dB)
_k = np.arange(N_CEP)[:, None]
_n = np.arange(N_MEL)[None, :]
DCT = np.sqrt(2.0 / N_MEL) * np.cos(np.pi * _k * (2 * _n + 1) / (2 * N_MEL))
DCT[0] /= np.sqrt(2.0)
_LOW2K = _FREQS < 2000.0
_HIGH2K = (_FREQS >= 2000.0) & (_FREQS < _HI_HZ)


def log_mel(power: np.ndarray) -> np.ndarray:
    """Log-mel energies (dB) of power spectra rows, shape (n, N_MEL)."""
    return 10.0 * np.log10(np.maximum(power @ MEL, 1e-12))


def chunk_cepstral(power_speech: np.ndarray, adjacent: np.ndarray, min_frames: int = 3
                   ) -> tuple[list[float], list[float], float | None, float | None] | None:
    """MFCC statistics and spectral dynamics of a chunk's speech frames.

    Returns (mfcc_mean c1..c12, mfcc_std c0..c12, spectral flux in dB, Hammarberg index in dB) or None
    with fewer than ``min_frames`` frames.  ``adjacent[i]`` says frame i+1 directly follows frame i
    (flux is only taken across consecutive frames).  All but c0's mean (not returned) are independent
    of the line gain.
    """
    if power_speech.shape[0] < min_frames:
        return None
    lm = log_mel(power_speech)
    cep = lm @ DCT.T
    mean = cep[:, 1:].mean(axis=0)
    std = cep.std(axis=0)
    flux = None
    if adjacent.any():
        d = lm[1:][adjacent] - lm[:-1][adjacent]
        flux = float(np.sqrt((d * d).mean(axis=1)).mean())
    ltas = power_speech.mean(axis=0)
    lo, hi = float(ltas[_LOW2K].max()), float(ltas[_HIGH2K].max())
    hamm = float(10.0 * np.log10(lo / hi)) if lo > 0 and hi > 0 else None
    return mean.tolist(), std.tolist(), flux, hamm


def chunk_spectral(bands_speech: np.ndarray, min_frames: int = 3) -> tuple[float | None, float | None]:
    """(spectral_tilt_db per octave, hf_ratio) from summed band energies of speech frames."""
    if bands_speech.shape[0] < min_frames:
        return None, None
    tot = bands_speech.sum(axis=0)
    low, high = tot[0], tot[1]
    if low + high <= 1e-20:
        return None, None
    hf = float(high / (low + high))
    oct_db = 10.0 * np.log10(np.maximum(tot[3:] / BANDS[:, 3:].sum(axis=0), 1e-20))
    slope = float(np.dot(_OCT_X, oct_db - oct_db.mean()) / np.dot(_OCT_X, _OCT_X))
    return slope, hf
