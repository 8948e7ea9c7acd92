"""Streaming syllable-nucleus detection and speaking-rate window.

Nuclei are peaks of the syllabic modulation of a loudness envelope (the 300–2500 Hz band level,
dB, one value per 10 ms frame), picked with hysteresis:

1. *Envelope*: voiced frames keep their level, other frames (unvoiced consonants, pauses) are set
   ``gap_db`` below ``peak_ref``, a slowly decaying maximum of the recent level, and every value is
   clipped to that same lower bound (so noise and pauses cannot make dips deeper than ``gap_db``).
2. *Syllabic band-pass*: a first-order Butterworth band-pass (``band_lo_hz``–``band_hi_hz``, causal
   IIR, two floats of state) removes the slow phrase contour and the fast flicker inside a vowel,
   leaving the syllable-rate modulation.
3. *Hysteresis peak picking* on the band-passed value y: a peak counts only after y has risen
   from the last valley and then fallen from the peak by ``hi_db``, or by only ``lo_db`` when
   voicing broke in between (a syllable boundary with an unvoiced consonant or a pause is certain;
   inside one voiced stretch, where Mandarin syllables with sonorant initials and long emotional
   vowels meet, a dip must be deeper).  The peak frame must be voiced (or be within two frames of
   voicing), lie less than ``below_peak_db`` under ``peak_ref``, and be at least ``min_dist`` frames
   after the previous nucleus.

Both sides of a peak must show a dip, which removes the double counts that small ripples on the
rise of a syllable gave the previous one-sided detector (AISHELL Mandarin read speech at 8 kHz:
23 % → 9 % window error, see bench/RESULTS_rate.md).  A nucleus is flagged at the frame where its
peak is *confirmed* (the fall), median 50 ms and 95 % within 120 ms after the peak of the band-passed
envelope (AISHELL, EmoDB at 8 kHz); all state is a few floats,
so the detector is exactly chunk-split invariant.

Speaking rate = nuclei / speech time in a sliding window of the last ``window_frames``
(pauses, i.e. non-speech frames, are excluded from the denominator: articulation rate).
"""
from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, lfilter, lfilter_zi

FRAME_RATE_HZ = 100.0  # envelope frames per second (10 ms hop)


@dataclass
class RateParams:
    # tuned on AISHELL odd utterances + EmoDB speakers 03 08 09 10 11 at 8 kHz, 8 kHz µ-law and 16 kHz
    # (training/audio/eval_rate_real.py --tune); reported on the rest and on other corpora
    band_lo_hz: float = 2.0  # syllabic modulation band of the envelope
    band_hi_hz: float = 16.0
    hi_db: float = 6.0  # rise/fall of the band-passed envelope that makes a peak inside one voiced stretch
    lo_db: float = 2.5  # ... and across a voicing break
    gap_db: float = 40.0  # unvoiced frames sit this far below peak_ref; the envelope's lower bound
    below_peak_db: float = 35.0  # a nucleus peak must be within this of peak_ref
    peak_decay_db: float = 0.05  # per frame decay of the loudness reference (5 dB/s)
    min_dist: int = 7  # frames between nuclei
    window_frames: int = 300  # 3 s rate window
    min_speech_frames: int = 50  # need 0.5 s of speech in the window for a rate
    # stream.py passes speech & (YIN CMNDF < this) as "voiced": lenient (YIN's own voicing cut is 0.35),
    # so only clearly aperiodic speech frames (fricatives, bursts) count as voicing breaks
    nucleus_aperiodicity: float = 0.9


@functools.lru_cache(maxsize=8)
def _envelope_band(lo_hz: float, hi_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-order band-pass of the envelope (frame rate) and its unit initial state; arrays are never written."""
    b, a = butter(1, [lo_hz, hi_hz], btype="band", fs=FRAME_RATE_HZ)
    return b, a, lfilter_zi(b, a)


@dataclass
class NucleusDetector:
    params: RateParams = field(default_factory=RateParams)
    zi: list[float] | None = None  # band-pass filter state (None before the first frame)
    peak_ref: float = -100.0
    seek_peak: bool = True  # True: rising towards a peak; False: falling towards a valley
    cand: float = -math.inf  # highest y since the last valley (candidate peak)
    cand_frame: int = -1
    cand_ok: bool = False  # candidate peak is voiced and loud enough
    valley: float = math.inf  # lowest y since the last peak
    broke: bool = True  # voicing broke since the last turning point
    v_hist: list[bool] = field(default_factory=lambda: [False, False])  # voicing of the two previous frames
    last_peak: int = -10**9  # frame index of the last accepted nucleus
    frame: int = 0  # global index of the next frame

    def __post_init__(self) -> None:
        # a detector is rebuilt from the call's stored state for every window: design the filter once per band
        self._b, self._a, self._zi_unit = _envelope_band(self.params.band_lo_hz, self.params.band_hi_hz)

    def process(self, env_db: np.ndarray, voiced: np.ndarray, floor_db: np.ndarray | None = None) -> np.ndarray:
        """Return a bool array: True at frames where a nucleus is *confirmed* (after its peak).

        ``env_db``: 300–2500 Hz band level per frame; ``voiced``: speech & periodic per frame.
        ``floor_db`` (the VAD noise floor) is accepted for the caller's interface and not used:
        it is a full-band level, not comparable with the band envelope.
        """
        p = self.params
        n = len(env_db)
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        env = np.asarray(env_db, dtype=float)
        vl = np.asarray(voiced, dtype=bool)
        # loudness reference: a maximum that decays by peak_decay_db per frame (sequential, plain floats)
        decay = p.peak_decay_db
        ref = self.peak_ref
        refs = []
        for e in env.tolist():
            ref = ref - decay if ref - decay > e else e
            refs.append(ref)
        self.peak_ref = ref
        lower = np.asarray(refs) - p.gap_db
        x = np.where(vl, np.maximum(env, lower), lower)
        zi = self._zi_unit * x[0] if self.zi is None else np.asarray(self.zi)
        y, zf = lfilter(self._b, self._a, x, zi=zi)
        self.zi = [float(v) for v in zf]
        ext = np.concatenate([np.asarray(self.v_hist, dtype=bool), vl])
        ok = ext[2:] | ext[1:-1] | ext[:-2]  # voiced here or in one of the two frames before
        ok = ok & (env > np.asarray(refs) - p.below_peak_db)
        self.v_hist = [bool(ext[-2]), bool(ext[-1])]
        # hysteresis peak picking (plain-float loop: numpy scalars are ~5x slower per operation)
        seek, cand, cand_frame, cand_ok = self.seek_peak, self.cand, self.cand_frame, self.cand_ok
        valley, broke, last = self.valley, self.broke, self.last_peak
        lo, hi, min_dist, g0 = p.lo_db, p.hi_db, p.min_dist, self.frame
        for i, (yi, vi, oki) in enumerate(zip(y.tolist(), vl.tolist(), ok.tolist())):
            if not vi:
                broke = True
            if seek:
                if yi > cand:
                    cand, cand_frame, cand_ok, broke = yi, g0 + i, oki, not vi
                else:
                    fall = cand - yi
                    if fall >= hi or (fall >= lo and broke):
                        if cand_ok and cand_frame - last >= min_dist:
                            out[i] = True
                            last = cand_frame
                        seek, valley, broke = False, yi, not vi
            elif yi < valley:
                valley = yi
            else:
                rise = yi - valley
                if rise >= hi or (rise >= lo and broke):
                    seek, cand, cand_frame, cand_ok, broke = True, yi, g0 + i, oki, not vi
        self.seek_peak, self.cand, self.cand_frame, self.cand_ok = bool(seek), cand, cand_frame, bool(cand_ok)
        self.valley, self.broke, self.last_peak = valley, bool(broke), last
        self.frame += n
        return out

    def state_dict(self) -> dict:
        def fin(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "zi": None if self.zi is None else [float(v) for v in self.zi],
            "peak_ref": float(self.peak_ref), "seek_peak": bool(self.seek_peak),
            "cand": fin(self.cand), "cand_frame": int(self.cand_frame), "cand_ok": bool(self.cand_ok),
            "valley": fin(self.valley), "broke": bool(self.broke), "v_hist": [bool(v) for v in self.v_hist],
            "last_peak": int(self.last_peak), "frame": int(self.frame),
        }

    @classmethod
    def from_state(cls, d: dict, params: RateParams | None = None) -> "NucleusDetector":
        o = cls(params=params or RateParams())
        if "seek_peak" not in d:  # state of the previous (one-sided) detector: restart detection
            o.frame = int(d.get("frame", 0))
            return o
        o.zi = None if d["zi"] is None else [float(v) for v in d["zi"]]
        o.peak_ref = float(d["peak_ref"])
        o.seek_peak = bool(d["seek_peak"])
        o.cand = -math.inf if d["cand"] is None else float(d["cand"])
        o.cand_frame = int(d["cand_frame"])
        o.cand_ok = bool(d["cand_ok"])
        o.valley = math.inf if d["valley"] is None else float(d["valley"])
        o.broke = bool(d["broke"])
        o.v_hist = [bool(v) for v in d["v_hist"]]
        o.last_peak = int(d["last_peak"])
        o.frame = int(d["frame"])
        return o


@dataclass
class RateWindow:
    """Sliding window of per-frame speech / nucleus flags (uint8), newest last."""

    window_frames: int = 300
    speech: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    nuclei: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    def push(self, speech: np.ndarray, nuclei: np.ndarray) -> None:
        w = self.window_frames
        self.speech = np.concatenate([self.speech, speech.astype(np.uint8)])[-w:]
        self.nuclei = np.concatenate([self.nuclei, nuclei.astype(np.uint8)])[-w:]

    def rate(self, hop_s: float, min_speech_frames: int) -> tuple[float | None, float]:
        sp = int(self.speech.sum())
        if sp < min_speech_frames:
            return None, sp * hop_s
        return float(self.nuclei.sum()) / (sp * hop_s), sp * hop_s

    def state_dict(self) -> dict:
        return {
            "speech": base64.b64encode(np.packbits(self.speech).tobytes()).decode(),
            "nuclei": base64.b64encode(np.packbits(self.nuclei).tobytes()).decode(),
            "n": int(self.speech.size),
        }

    @classmethod
    def from_state(cls, d: dict, window_frames: int) -> "RateWindow":
        n = int(d["n"])
        sp = np.unpackbits(np.frombuffer(base64.b64decode(d["speech"]), dtype=np.uint8))[:n]
        nu = np.unpackbits(np.frombuffer(base64.b64decode(d["nuclei"]), dtype=np.uint8))[:n]
        return cls(window_frames=window_frames, speech=sp.astype(np.uint8), nuclei=nu.astype(np.uint8))
