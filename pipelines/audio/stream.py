"""Streaming per-speaker prosody features (one :class:`SpeakerStream` per speaker/channel).

Pipeline per chunk (all numpy-vectorised over the frames of the chunk):
  16 kHz input → 63-tap FIR low-pass (3.6 kHz) + decimation to 8 kHz (the analysis rate for
  both 8 and 16 kHz calls, so one model serves both) → DC blocker → frames every 10 ms
  (48 ms frames: YIN F0 and, from the same FFT, the Hann band spectrum; level = RMS of the
  centred 32 ms) → energy VAD (:mod:`.vad`) → YIN F0 +
  octave guard (:mod:`.pitch`) → level (:mod:`.loudness`) → band energies (:mod:`.spectral`)
  → syllable nuclei + 3 s speaking-rate window (:mod:`.rate`).

Streaming-correct: unconsumed samples, FIR tail, decimation phase, DC-filter memory, VAD
floor/hangover, pitch reference, nucleus detector and rate window all live in the state,
so any chunking of a signal yields the same frame sequence (features of a chunk cover the
frames that *complete* inside it, so they lag the chunk end by up to 48 ms; a syllable nucleus
is counted one frame after its peak).  ``state_dict()`` is plain JSON
(arrays as base64 float64), restoring it on another worker gives bit-identical output.
"""
from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import firwin, lfilter

from pipelines.audio import logmel, loudness, spectral
from pipelines.audio.loudness import percentiles
from pipelines.audio.pitch import OctaveGuard, YinConfig, yin
from pipelines.audio.rate import NucleusDetector, RateParams, RateWindow
from pipelines.audio.vad import EnergyVad
from pipelines.errors import UnsupportedAudioError

logger = logging.getLogger("nuqi.audio.stream")

SR = 8000  # analysis rate
HOP = 80  # 10 ms
HOP_S = HOP / SR
FRAME = 384  # 48 ms (F0 window)
LEVEL_LEN = 256  # 32 ms level window centred in the frame
CENTER_OFF = (FRAME - LEVEL_LEN) // 2
MEL_OFF = (FRAME - logmel.WIN) // 2  # the log-mel frame: the centre 25 ms of the 48 ms frame
DC_POLE = 0.995
_FIR = firwin(63, 3600.0, fs=16000.0)
_FIR_REV = _FIR[::-1].copy()
_YIN = YinConfig(sr=SR, frame_len=FRAME)
# scale band power (one-sided |X|^2 of a Hann frame) to a mean-square level comparable with frame_db
_BAND_NORM = 2.0 / (spectral.NFFT * float(np.sum(spectral._HANN**2)))
F0_STATS_APERIODICITY = 0.25  # voiced frames entering the F0 statistics need CMNDF below this
STATE_VERSION = 1


def _voice_quality(f0: np.ndarray, ap: np.ndarray, db: np.ndarray, voiced: np.ndarray, speech: np.ndarray
                   ) -> tuple[float | None, float | None, float | None, float | None]:
    """(hnr_db, jitter_st, shimmer_db, level_slope_db) of one chunk's frames; None where too few frames."""
    hnr = jit = shim = slope = None
    vi = np.flatnonzero(voiced)
    if vi.size >= 3:
        a = np.clip(ap[vi], 1e-3, 0.999)
        hnr = float(np.median(10.0 * np.log10((1.0 - a) / a)))
    pi = np.flatnonzero(voiced & (ap < F0_STATS_APERIODICITY))
    if pi.size >= 4:
        adj = np.diff(pi) == 1
        if adj.sum() >= 3:
            a, b = pi[:-1][adj], pi[1:][adj]
            jit = float(np.median(np.abs(12.0 * np.log2(f0[b] / f0[a]))))
            shim = float(np.median(np.abs(db[b] - db[a])))
    si = np.flatnonzero(speech)
    if si.size >= 4:
        adj = np.diff(si) == 1
        if adj.sum() >= 3:
            d = db[si[1:][adj]] - db[si[:-1][adj]]
            slope = float(np.percentile(d, 90))
    return hnr, jit, shim, slope


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.float64).tobytes()).decode()


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float64).copy()


@dataclass
class ChunkFeatures:
    """Features of one speaker over one chunk (frames completed in the chunk)."""

    duration_s: float  # input duration of the chunk
    speech_s: float  # VAD speech time among the chunk's frames
    speech_rate: float | None  # syllables / s of speaking time, 3 s window ending here (None: < 0.5 s speech)
    f0_median_hz: float | None
    f0_range_st: float | None  # p90 - p10 of voiced-frame F0, semitones
    loudness_db: float | None  # median speech-frame RMS level, dBFS (unweighted, 8 kHz telephone band)
    voiced_ratio: float  # voiced frames / all frames of the chunk
    spectral_tilt_db: float | None  # dB per octave over 125 Hz–3.8 kHz octave bands (LTAS of speech frames)
    hf_ratio: float | None  # energy 1–3.8 kHz / 0.1–3.8 kHz of speech frames
    syllables: int  # nuclei detected in this chunk
    voiced_s: float = 0.0
    loudness_range_db: float | None = None  # p90 - p10 of speech-frame level
    f0_mad_st: float | None = None  # robust F0 spread: 1.4826 * median |12 log2(f0 / median)|, semitones
    rate_speech_s: float = 0.0  # speech time inside the rate window
    n_frames: int = 0
    # voice quality and spectral dynamics (gain-invariant; inputs of the acoustic anger model)
    hnr_db: float | None = None  # median over voiced frames of 10 log10((1 - d') / d'), d' = YIN CMNDF at the pick
    jitter_st: float | None = None  # median |F0 step| between consecutive periodic frames, semitones
    shimmer_db: float | None = None  # median |level step| between consecutive periodic frames, dB
    level_slope_db: float | None = None  # p90 of the level step between consecutive speech frames (attack), dB
    spectral_flux_db: float | None = None  # mean RMS log-mel change between consecutive speech frames, dB
    hammarberg_db: float | None = None  # LTAS peak 0–2 kHz over peak 2–3.8 kHz, dB
    mfcc_mean: list[float] | None = None  # c1..c12 means over speech frames (20 mel bands 100–3800 Hz)
    mfcc_std: list[float] | None = None  # c0..c12 standard deviations over speech frames
    # (frames, 40) log-mel in dB of the chunk's frames (pipelines.audio.logmel), the CNN member's input; in
    # memory only (not in to_dict: it is input, not a feature)
    log_mel: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = dict(vars(self))  # scalars and two short lists that are never mutated: no deep copy needed
        d.pop("log_mel", None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ChunkFeatures":
        return cls(**d)


class SpeakerStream:
    """Stateful feature extractor for one speaker's audio."""

    def __init__(self, sample_rate: int) -> None:
        if sample_rate not in (8000, 16000):
            raise UnsupportedAudioError(
                f"SpeakerStream analyses 8000 or 16000 Hz audio, got {sample_rate} Hz", sample_rate=sample_rate
            )
        self.sample_rate = sample_rate
        self._buf = np.zeros(0)  # 8 kHz samples from the next frame start on
        self._fir_tail = np.zeros(len(_FIR) - 1)  # 16 kHz history for the decimating FIR
        self._phase = 0
        self._dc_zi = np.zeros(1)
        self._vad = EnergyVad()
        self._guard = OctaveGuard()
        self._rate_params = RateParams()
        self._det = NucleusDetector(params=self._rate_params)
        self._win = RateWindow(window_frames=self._rate_params.window_frames)
        self.frames_done = 0

    # ------------------------------------------------------------------ signal path
    def _to_8k(self, x: np.ndarray) -> np.ndarray:
        if self.sample_rate == SR:
            return x
        buf = np.concatenate([self._fir_tail, x])
        self._fir_tail = buf[-(len(_FIR) - 1):].copy()
        if len(buf) < len(_FIR):
            return np.zeros(0)
        win = np.lib.stride_tricks.sliding_window_view(buf, len(_FIR))[self._phase :: 2]
        n_valid = len(buf) - len(_FIR) + 1
        self._phase = (self._phase - n_valid) % 2
        return win @ _FIR_REV

    def process(self, samples: np.ndarray) -> ChunkFeatures:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        duration = x.size / self.sample_rate
        y = self._to_8k(x)
        if y.size:
            y, self._dc_zi = lfilter([1.0, -1.0], [1.0, -DC_POLE], y, zi=self._dc_zi)
        buf = np.concatenate([self._buf, y])
        n = (len(buf) - FRAME) // HOP + 1 if len(buf) >= FRAME else 0
        if n <= 0:
            self._buf = buf
            return self._empty(duration)
        frames = np.lib.stride_tricks.sliding_window_view(buf, FRAME)[: (n - 1) * HOP + 1 : HOP]
        self._buf = buf[n * HOP :].copy()
        self.frames_done += n
        center = frames[:, CENTER_OFF : CENTER_OFF + LEVEL_LEN]

        db = loudness.frame_db(center)
        speech, floor = self._vad.process(db)
        # pitch only where the VAD hears speech: every use of f0/aperiodicity below is masked by `speech`
        f0, ap, dp, fx = yin(frames, _YIN, only=speech)
        power = spectral.hann_power(fx)
        bands = power @ spectral.BANDS
        env = 10.0 * np.log10(np.maximum(bands[:, 2] * _BAND_NORM, 1e-10))
        voiced = speech & (ap < _YIN.voicing)
        f0 = self._guard.apply(f0, ap, dp, voiced, _YIN)
        nuclei = self._det.process(env, speech & (ap < self._rate_params.nucleus_aperiodicity), floor)
        self._win.push(speech, nuclei)
        rate, rate_sp = self._win.rate(HOP_S, self._rate_params.min_speech_frames)

        fv = f0[voiced & (ap < F0_STATS_APERIODICITY)]
        if fv.size >= 3:
            p10, p50, p90 = percentiles(fv)
            f0_med, f0_rng = float(p50), float(12.0 * math.log2(p90 / p10))
            f0_mad = float(1.4826 * np.median(np.abs(np.log2(fv / p50))) * 12.0)
        else:
            f0_med = f0_rng = f0_mad = None
        loud, loud_rng = loudness.chunk_loudness(db[speech])
        tilt, hf = spectral.chunk_spectral(bands[speech])
        vq = _voice_quality(f0, ap, db, voiced, speech)
        si = np.flatnonzero(speech)
        cep = spectral.chunk_cepstral(power[si], np.diff(si) == 1) if si.size else None
        return ChunkFeatures(
            duration_s=duration,
            speech_s=float(speech.sum()) * HOP_S,
            speech_rate=rate,
            f0_median_hz=f0_med,
            f0_range_st=f0_rng,
            loudness_db=loud,
            voiced_ratio=float(voiced.sum()) / n,
            spectral_tilt_db=tilt,
            hf_ratio=hf,
            syllables=int(nuclei.sum()),
            voiced_s=float(voiced.sum()) * HOP_S,
            loudness_range_db=loud_rng,
            f0_mad_st=f0_mad,
            rate_speech_s=rate_sp,
            n_frames=int(n),
            hnr_db=vq[0],
            jitter_st=vq[1],
            shimmer_db=vq[2],
            level_slope_db=vq[3],
            spectral_flux_db=None if cep is None else cep[2],
            hammarberg_db=None if cep is None else cep[3],
            mfcc_mean=None if cep is None else cep[0],
            mfcc_std=None if cep is None else cep[1],
            log_mel=logmel.frames_log_mel(frames[:, MEL_OFF : MEL_OFF + logmel.WIN]),
        )

    def _empty(self, duration: float) -> ChunkFeatures:
        rate, rate_sp = self._win.rate(HOP_S, self._rate_params.min_speech_frames)
        return ChunkFeatures(duration, 0.0, rate, None, None, None, 0.0, None, None, 0, rate_speech_s=rate_sp)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "sample_rate": self.sample_rate,
            "buf": _b64(self._buf),
            "fir_tail": _b64(self._fir_tail),
            "phase": int(self._phase),
            "dc_zi": float(self._dc_zi[0]),
            "vad": self._vad.state_dict(),
            "guard": self._guard.state_dict(),
            "det": self._det.state_dict(),
            "win": self._win.state_dict(),
            "frames_done": self.frames_done,
        }

    @classmethod
    def from_state(cls, d: dict) -> "SpeakerStream":
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"SpeakerStream state version {d.get('version')!r} != {STATE_VERSION}; start a new stream")
        s = cls(int(d["sample_rate"]))
        s._buf = _unb64(d["buf"])
        s._fir_tail = _unb64(d["fir_tail"])
        s._phase = int(d["phase"])
        s._dc_zi = np.array([float(d["dc_zi"])])
        s._vad = EnergyVad.from_state(d["vad"])
        s._guard = OctaveGuard.from_state(d["guard"])
        s._det = NucleusDetector.from_state(d["det"], s._rate_params)
        s._win = RateWindow.from_state(d["win"], s._rate_params.window_frames)
        s.frames_done = int(d["frames_done"])
        return s
