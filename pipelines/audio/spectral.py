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


def band_energies(rect_spec: np.ndarray) -> np.ndarray:
    """Hann-windowed power summed into BANDS, shape (n_frames, 8).

    ``rect_spec`` is rfft(frame, NFFT) of the un-windowed frame; a periodic Hann window is
    applied in the frequency domain (H_k = X_k/2 - (X_{k-1} + X_{k+1})/4), saving an FFT.
    """
    x = rect_spec
    h = 0.5 * x
    h[:, 1:-1] -= 0.25 * (x[:, :-2] + x[:, 2:])
    h[:, 0] -= 0.5 * x[:, 1].real
    h[:, -1] -= 0.5 * x[:, -2].real
    p = h.real**2 + h.imag**2
    return p @ BANDS


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
