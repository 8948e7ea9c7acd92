"""Fast vectorised F0 estimation for 8 kHz telephone speech (YIN via FFT).

:func:`yin` computes the cumulative-mean-normalised difference function (CMNDF, de
Cheveigné & Kawahara 2002) for *all* frames of a chunk at once with two real FFTs, picks
the first local minimum under ``threshold`` (absolute-threshold step), refines it with
parabolic interpolation and returns per-frame F0 plus the CMNDF value ("aperiodicity",
lower = more periodic).  :class:`OctaveGuard` then fixes octave jumps against a running
log-F0 reference of the speaker (state = two floats, JSON-serialisable).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("nuqi.audio.pitch")

FMIN_HZ = 60.0
FMAX_HZ = 500.0


@dataclass(frozen=True)
class YinConfig:
    sr: int = 8000
    frame_len: int = 384  # 48 ms analysis frame = integration window + max lag
    fmin: float = FMIN_HZ
    fmax: float = FMAX_HZ
    threshold: float = 0.15  # absolute CMNDF threshold of the YIN step 4
    voicing: float = 0.35  # frames whose best CMNDF exceeds this are unvoiced

    @property
    def tau_min(self) -> int:
        return int(math.floor(self.sr / self.fmax))

    @property
    def tau_max(self) -> int:
        return int(math.ceil(self.sr / self.fmin))

    @property
    def win(self) -> int:
        return self.frame_len - self.tau_max - 2


def cmndf(frames: np.ndarray, cfg: YinConfig, fx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CMNDF d'(tau) for tau = 0..tau_max+1, shape (n_frames, tau_max + 2), and rfft(frames).

    r(tau) = sum_{j<W} x_j x_{j+tau} is a cross-correlation of the first W samples with the
    whole frame; since j + tau < frame_len, an FFT of size frame_len has no wrap-around, and the
    frame's own spectrum is returned for reuse by the spectral features (or taken from ``fx``).
    """
    n_frames, n = frames.shape
    w = cfg.win
    tmax = cfg.tau_max + 1
    if fx is None:
        fx = np.fft.rfft(frames, n, axis=1)
    fw = np.fft.rfft(frames[:, :w], n, axis=1)
    r = np.fft.irfft(fx * np.conj(fw), n, axis=1)[:, : tmax + 1]
    cs = np.empty((n_frames, n + 1))
    cs[:, 0] = 0.0
    np.cumsum(frames * frames, axis=1, out=cs[:, 1:])
    e0 = cs[:, w : w + 1]
    et = cs[:, w : w + tmax + 1] - cs[:, : tmax + 1]
    d = e0 + et
    d -= 2.0 * r
    np.maximum(d, 0.0, out=d)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1)
    dn = np.ones_like(d)
    np.maximum(cum, 1e-12, out=cum)
    dn[:, 1:] = d[:, 1:] * _TAUS[: tmax] / cum
    return dn, fx


_TAUS = np.arange(1, 4096, dtype=float)


def yin(frames: np.ndarray, cfg: YinConfig, only: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (f0_hz, cmndf_at_pick, dprime, rfft of frames) per frame.

    ``only`` (a boolean mask over frames, e.g. the VAD's speech frames) limits the CMNDF to those
    frames; the others get f0 = 0, aperiodicity 1 and a flat CMNDF (the spectrum is still returned
    for every frame).  Without it f0 is defined for every frame.
    """
    n_frames = frames.shape[0]
    if n_frames == 0:
        z = np.zeros(0)
        return z, z, np.zeros((0, cfg.tau_max + 2)), np.zeros((0, frames.shape[1] // 2 + 1), dtype=complex)
    sel = None if only is None else np.flatnonzero(only)
    if sel is None or sel.size == n_frames:
        dp, fx = cmndf(frames, cfg)
        f0, ap = _pick(dp, cfg)
        return f0, ap, dp, fx
    fx = np.fft.rfft(frames, frames.shape[1], axis=1)
    f0, ap, dp = np.zeros(n_frames), np.ones(n_frames), np.ones((n_frames, cfg.tau_max + 2))
    if sel.size:
        d, _ = cmndf(frames[sel], cfg, fx[sel])
        dp[sel] = d
        f0[sel], ap[sel] = _pick(d, cfg)
    return f0, ap, dp, fx


def _pick(dp: np.ndarray, cfg: YinConfig) -> tuple[np.ndarray, np.ndarray]:
    """YIN steps 4–5 on CMNDF rows: first dip under the threshold (else the global minimum), parabolic
    refinement; returns (f0_hz, cmndf at the pick)."""
    lo, hi = cfg.tau_min, cfg.tau_max
    seg = dp[:, lo : hi + 1]
    left = dp[:, lo - 1 : hi]
    right = dp[:, lo + 1 : hi + 2]
    local_min = (seg <= left) & (seg <= right)
    cand = local_min & (seg < cfg.threshold)
    has = cand.any(axis=1)
    first = np.argmax(cand, axis=1)
    gmin = np.argmin(seg, axis=1)
    idx = np.where(has, first, gmin)
    tau = idx + lo
    rows = np.arange(dp.shape[0])
    y0 = dp[rows, tau - 1]
    y1 = dp[rows, tau]
    y2 = dp[rows, tau + 1]
    den = y0 - 2.0 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / den, 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    return cfg.sr / (tau + shift), y1


def _best_near(dp_row: np.ndarray, tau: float, lo: int, hi: int) -> tuple[float, float]:
    """Local minimum of the CMNDF near lag ``tau`` (±2 samples); returns (lag, value)."""
    c = int(round(tau))
    a, b = max(lo, c - 2), min(hi, c + 2)
    if a > b:
        return float("nan"), 1.0
    k = a + int(np.argmin(dp_row[a : b + 1]))
    return float(k), float(dp_row[k])


class OctaveGuard:
    """Octave-error correction against a running median-like log2-F0 reference.

    A voiced frame whose F0 is more than ``jump`` octaves from the reference is replaced by
    the half/double-lag candidate when that candidate is nearly as periodic (CMNDF within
    ``slack``).  The reference follows confident frames with an exponential average in the
    log domain, so it tracks the speaker, not a fixed gender prior.
    """

    def __init__(self, ref: float | None = None, n: int = 0, jump: float = 0.6, slack: float = 0.12,
                 alpha: float = 0.05) -> None:
        self.ref = ref  # log2 Hz
        self.n = n
        self.jump = jump
        self.slack = slack
        self.alpha = alpha

    def apply(self, f0: np.ndarray, ap: np.ndarray, dp: np.ndarray, voiced: np.ndarray, cfg: YinConfig) -> np.ndarray:
        out = f0.copy()
        lo, hi = cfg.tau_min, cfg.tau_max
        idx = np.flatnonzero(voiced)
        if idx.size == 0:
            return out
        lfs = np.log2(f0[idx]).tolist()
        aps = ap[idx].tolist()
        ref, n, jump, alpha = self.ref, self.n, self.jump, self.alpha
        log2 = math.log2
        for j, i in enumerate(idx.tolist()):
            lf = lfs[j]
            if ref is not None and n >= 10:
                dist = lf - ref
                if dist > jump or dist < -jump:
                    tau = cfg.sr / out[i]
                    alt_tau = tau * 2.0 if dist > 0 else tau / 2.0
                    k, v = _best_near(dp[i], alt_tau, lo, hi)
                    if not math.isnan(k) and v < aps[j] + self.slack and v < cfg.voicing:
                        out[i] = cfg.sr / k
                        lf = log2(out[i])
            if aps[j] < 0.15:
                if ref is None:
                    ref = lf
                else:
                    a = max(alpha, 1.0 / (n + 1))
                    ref += a * (lf - ref)
                n += 1
        self.ref, self.n = ref, n
        return out

    def state_dict(self) -> dict:
        return {"ref": None if self.ref is None else float(self.ref), "n": int(self.n)}

    @classmethod
    def from_state(cls, d: dict) -> "OctaveGuard":
        return cls(ref=d["ref"], n=int(d["n"]))
