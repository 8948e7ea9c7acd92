"""Speech-rate accuracy of the service's syllable-nucleus detector on real speech with known text.

What is measured
  The service path exactly: each corpus is streamed as "calls" (the clips of one speaker back to
  back, as a call would carry them, all state carried) through :class:`SpeakerStream` in 1 s
  chunks.  Speech time always comes from the service's own VAD.  Two figures:

  * **window MAE** (the target): after every 1 s chunk the service reports ``speech_rate`` over
    its 3 s rate window (syllables / VAD speech time); windows holding 2–3 s of VAD speech are
    scored, error = |reported - true| / true with the true rate = true syllables in the window /
    the same VAD speech time.  True syllables in a window:
      - EmoDB: hand-labelled syllable boundaries (``labsilb``): each syllable counts with the
        fraction of its labelled interval that lies inside the window (exact alignment);
      - every other corpus (no syllable alignment available, no forced aligner): a clip's known
        syllable count is spread over the clip's VAD speech frames in proportion, i.e. the rate
        is taken as constant within one utterance.  Real rate varies inside an utterance, so this
        truth is itself noisy and the window MAE it gives is pessimistic (an exact detector would
        not score 0).
  * **clip MAE**: per utterance, |detected nuclei - true count| / true count, nuclei attributed to
    a clip by the time of their envelope peak; with the same VAD denominator this equals the
    per-utterance articulation-rate error.

Known syllable counts (text → syllables)
  * aishell-sample-dev (Mandarin read speech, one speaker): one syllable per Chinese character;
    every transcript is all Hanzi (digits are written as characters).  Erhua (哪儿/这儿/那儿/…)
    is ambiguous (one or two syllables) and such utterances are excluded (W0043).
  * emodb (German): ``labsilb`` syllable labels (a mark's time is where its label starts, see
    :func:`labsilb_syllables`); the shared WAVs are cut to 2.0 s, so a syllable cut by the clip end
    counts with the fraction of its labelled interval inside the clip.
  * ravdess-speech (English): "Kids are talking by the door" / "Dogs are sitting by the door",
    7 syllables each (kids·are·tal·king·by·the·door).
  * korean-emotiontts: Hangul syllable blocks (texts with digits or Latin letters excluded).
  * nemo-polish: orthographic vowel nuclei (a ą e ę i o ó u y; "i" before another vowel only
    palatalises and is not counted; texts with digits excluded).  Approximate for loanword
    diphthongs (au, eu), which are rare in its sentences.

Conditions
  * ``16k``: the 16 kHz file as is (aishell, emodb only).
  * ``8k``: 16 kHz sources resampled with the service's decoder resampler
    (:func:`pipelines.audio.decode.resample`, soxr HQ) and band-limited to the telephone band
    (300–3400 Hz, 4th-order Butterworth); the 8 kHz FLAC corpora band-limited the same way.
  * ``8k-ulaw``: ``8k`` then a G.711 µ-law round trip: encoded here (ITU-T G.711 segment
    encoder, checked against ``sox -e u-law`` when sox is installed) and decoded by the service's
    own :func:`pipelines.audio.decode.decode_chunk` (``encoding=mulaw``).

Split (never report only on what was tuned): detector parameters are tuned on aishell odd
utterances (1st, 3rd, … in manifest order) + EmoDB speakers 03 08 09 10 11; figures are reported
on aishell even utterances + EmoDB speakers 12–16, and on RAVDESS / Korean / Polish, which are
never used for tuning (cross-corpus).

    OMP_NUM_THREADS=1 .venv/bin/python -m training.audio.eval_rate_real            # report table
    OMP_NUM_THREADS=1 .venv/bin/python -m training.audio.eval_rate_real --tune     # grid on the tune split
    OMP_NUM_THREADS=1 .venv/bin/python -m training.audio.eval_rate_real --oracle   # noise of the window truth
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from pipelines.audio.decode import ChunkFormat, decode_chunk, resample
from pipelines.audio.rate import NucleusDetector, RateParams
from pipelines.audio.stream import FRAME, HOP_S, SR, SpeakerStream
from pipelines.settings import get_settings

logger = logging.getLogger("nuqi.training.eval_rate_real")

CONDITIONS = ("8k", "8k-ulaw", "16k")
EMODB_TUNE_SPEAKERS = {"03", "08", "09", "10", "11"}
MIN_WINDOW_SPEECH_S = 2.0  # score rate windows with 2-3 s of VAD speech
FRAME_CENTRE_S = FRAME / 2 / SR  # time of a frame's centre after its start
_TEL = butter(4, [300, 3400], btype="band", fs=8000, output="sos")

# kids·are·tal·king·by·the·door, dogs·are·sit·ting·by·the·door: 7 each (not 6)
RAVDESS_SYLLABLES = {"Kids are talking by the door": 7, "Dogs are sitting by the door": 7}
_ERHUA = re.compile(r"[哪这那点会玩]儿")
_HANZI = re.compile(r"[\u4e00-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_PL_VOWELS = set("aąeęioóuy")


# ------------------------------------------------------------------------------ syllable counts
def zh_syllables(text: str) -> int | None:
    """One per Hanzi; None (exclude) if anything else is spoken (digits, Latin) or erhua is present."""
    t = re.sub(r"[\s，。、？！,.?!：:；;“”\"']", "", text)
    if not t or _ERHUA.search(t) or len(_HANZI.findall(t)) != len(t):
        return None
    return len(t)


def ko_syllables(text: str) -> int | None:
    if re.search(r"[0-9A-Za-z]", text):
        return None
    n = len(_HANGUL.findall(text))
    return n or None


def pl_syllables(text: str) -> int | None:
    if re.search(r"[0-9]", text):
        return None
    t = text.lower()
    n = 0
    for i, ch in enumerate(t):
        if ch in _PL_VOWELS:
            if ch == "i" and i + 1 < len(t) and t[i + 1] in _PL_VOWELS:
                continue
            n += 1
    return n or None


def read_labsilb(p: Path) -> list[tuple[float, str]]:
    """(time, label) marks of an EmoDB xlabel file."""
    text = p.read_text(encoding="latin-1")
    body = text.split("\n#", 1)[1] if "\n#" in text else text
    marks = []
    for line in body.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            marks.append((float(parts[0]), parts[2]))
    return marks


def labsilb_syllables(p: Path) -> list[tuple[float, float]]:
    """Syllable intervals: a mark's time is where its label *starts*, the next mark ends it.

    Checked on the shared copy: the span between the last two marks is 99 % VAD speech (the last
    syllable) and every file ends with a "." mark (the final pause), so reading the times as
    segment *ends* (as pipelines/audio/eval_rate.py does) shifts every syllable by one.
    """
    m = read_labsilb(p)
    return [(t, m[j + 1][0]) for j, (t, lbl) in enumerate(m[:-1]) if lbl != "." and m[j + 1][0] > t]


# ------------------------------------------------------------------------------ corpora
@dataclass
class Clip:
    corpus: str
    group: str  # speaker: clips of one group are streamed back to back as one call
    path: Path
    count: float  # true syllables inside the audio
    syl: list[tuple[float, float]] | None = None  # labelled syllable intervals (s), if known
    split: str = "test"  # "tune" or "test"
    name: str = ""


def _speech(data_dir: Path | None) -> Path:
    return (data_dir or get_settings().data_dir) / "speech"


def _manifest(root: Path) -> list[dict]:
    with open(root / "manifest.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def aishell_clips(data_dir: Path | None = None) -> list[Clip]:
    root = _speech(data_dir) / "aishell-sample-dev"
    out = []
    for i, r in enumerate(_manifest(root)):
        n = zh_syllables(r["text"])
        if n is None:
            continue
        split = "tune" if i % 2 == 0 else "test"  # manifest rows 1, 3, 5, ... tune; 2, 4, ... report
        out.append(Clip("aishell", r["speaker"], root / r["path"], n, None, split, Path(r["path"]).stem))
    return out


def emodb_clips(data_dir: Path | None = None, clip_s: float = 2.0) -> list[Clip]:
    root = _speech(data_dir) / "emodb"
    out = []
    for r in _manifest(root):
        p = root / r["path"]
        lab = root / "labsilb" / (p.stem + ".labsilb")
        if not lab.exists():
            continue
        syl = [(b, e) for b, e in labsilb_syllables(lab) if b < clip_s]
        count = sum((min(e, clip_s) - b) / (e - b) for b, e in syl)  # a syllable cut by the clip end counts in part
        if not syl or count < 1:
            continue
        split = "tune" if r["speaker"] in EMODB_TUNE_SPEAKERS else "test"
        out.append(Clip("emodb", r["speaker"], p, count, syl, split, p.stem))
    return out


def _flac_clips(corpus: str, folder: str, count_fn, per_speaker: int | None, data_dir: Path | None,
                emotions: tuple[str, ...] | None = None) -> list[Clip]:
    root = _speech(data_dir) / folder
    rows = _manifest(root)
    by: dict[str, list[Clip]] = {}
    for r in rows:
        if emotions and r["emotion"] not in emotions:
            continue
        n = count_fn(r["text"])
        if n is None:
            continue
        lst = by.setdefault(r["speaker"], [])
        if per_speaker is None or len(lst) < per_speaker:
            lst.append(Clip(corpus, r["speaker"], root / r["path"], n, None, "test", Path(r["path"]).stem))
    return [c for lst in by.values() for c in lst]


def ravdess_clips(data_dir: Path | None = None, per_speaker: int | None = None) -> list[Clip]:
    return _flac_clips("ravdess", "ravdess-speech", RAVDESS_SYLLABLES.get, per_speaker, data_dir)


def korean_clips(data_dir: Path | None = None, per_speaker: int | None = None) -> list[Clip]:
    return _flac_clips("korean", "korean-emotiontts", ko_syllables, per_speaker, data_dir)


def polish_clips(data_dir: Path | None = None, per_speaker: int | None = 40) -> list[Clip]:
    # manifest order is per emotion folder, so cap per speaker *per emotion* to keep angry and neutral
    out: list[Clip] = []
    for emo in ("neutral", "angry", "happy", "sad", "fear", "surprise"):
        cap = per_speaker if emo in ("neutral", "angry") else (per_speaker // 4 if per_speaker else None)
        out += _flac_clips("polish", "nemo-polish", pl_syllables, cap, data_dir, emotions=(emo,))
    return out


CORPORA = {
    "aishell": aishell_clips,
    "emodb": emodb_clips,
    "ravdess": ravdess_clips,
    "korean": korean_clips,
    "polish": polish_clips,
}


# ------------------------------------------------------------------------------ channel
@lru_cache(maxsize=4096)
def _read(path: str) -> tuple[np.ndarray, int]:
    x, fs = sf.read(path, dtype="float64", always_2d=True)
    return x.mean(axis=1), fs


def mulaw_encode(x: np.ndarray) -> bytes:
    """ITU-T G.711 µ-law encoder on 14-bit magnitudes (the Sun/CCITT reference code that sox uses)."""
    pcm16 = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int32)
    pcm = np.minimum(pcm16 + 2, 32767) >> 2  # to 14 bits, rounded as sox does
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.floor(np.log2(mag)).astype(np.int32) - 5  # 0..8; 8 only at the clip value
    code = np.where(seg > 7, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8).tobytes()


def mulaw_encode_sox(x: np.ndarray) -> bytes | None:
    """The same through sox (reference), or None without sox."""
    if shutil.which("sox") is None:
        return None
    raw = (np.clip(np.round(x * 32768.0), -32768, 32767)).astype("<i2").tobytes()
    r = subprocess.run(["sox", "-D", "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-",
                        "-t", "raw", "-e", "u-law", "-b", "8", "-"], input=raw, capture_output=True, check=True)
    return r.stdout


def channel(x: np.ndarray, fs: int, cond: str) -> tuple[np.ndarray, int]:
    """Audio as the service would receive it under condition ``cond`` (float, rate)."""
    if cond == "16k":
        if fs != 16000:
            raise ValueError("16k condition needs a 16 kHz source")
        return x, 16000
    y = np.asarray(resample(x.astype(np.float32), fs, 8000), dtype=np.float64) if fs != 8000 else x
    y = sosfilt(_TEL, y)
    if cond == "8k":
        return y, 8000
    if cond == "8k-ulaw":
        body = mulaw_encode(y)
        d = decode_chunk(body, ChunkFormat(encoding="mulaw", sample_rate=8000), max_seconds=1e9)
        return np.asarray(d.audio["customer"], dtype=np.float64), 8000
    raise ValueError(f"unknown condition {cond!r}")


# ------------------------------------------------------------------------------ streaming
@dataclass
class Track:
    """One call: clips back to back, streamed in 1 s chunks through one SpeakerStream."""

    clips: list[Clip]
    starts: list[float]  # clip start times (s) in the call
    ends: list[float]
    speech: np.ndarray  # per frame VAD flag
    nuclei: np.ndarray  # per frame: nucleus confirmed here (peak one frame earlier)
    chunk_end_frame: list[int] = field(default_factory=list)  # frames done after each chunk
    chunk_rate: list[float | None] = field(default_factory=list)
    chunk_rate_speech: list[float] = field(default_factory=list)
    window_frames: int = 300


def frame_time(k: np.ndarray | int) -> np.ndarray | float:
    return np.asarray(k) * HOP_S + FRAME_CENTRE_S


def run_track(clips: list[Clip], cond: str, params: RateParams | None = None) -> Track:
    pieces, starts, ends, t = [], [], [], 0.0
    sr = None
    for c in clips:
        x, fs = _read(str(c.path))
        y, sr = channel(x, fs, cond)
        pieces.append(y)
        starts.append(t)
        t += len(y) / sr
        ends.append(t)
    assert sr is not None
    sig = np.concatenate(pieces + [np.zeros(int(0.3 * sr))])  # flush the frame lag at the end
    s = SpeakerStream(sr)
    if params is not None:
        s._rate_params = params
        s._det = NucleusDetector(params=params)
        s._win.window_frames = params.window_frames
    sp, nu, cend, crate, csp = [], [], [], [], []
    done = 0
    for i in range(0, len(sig), sr):
        f = s.process(sig[i : i + sr])
        n = f.n_frames
        if n:
            sp.append(s._win.speech[-n:].copy())
            nu.append(s._win.nuclei[-n:].copy())
        done += n
        cend.append(done)
        crate.append(f.speech_rate)
        csp.append(f.rate_speech_s)
    return Track(clips, starts, ends, np.concatenate(sp).astype(bool), np.concatenate(nu).astype(bool),
                 cend, crate, csp, s._rate_params.window_frames)


def clip_errors(tr: Track) -> list[tuple[Clip, int, float]]:
    """(clip, detected nuclei, VAD speech s) per clip."""
    peak_t = frame_time(np.flatnonzero(tr.nuclei) - 1)
    sp_t = frame_time(np.flatnonzero(tr.speech))
    out = []
    for c, a, b in zip(tr.clips, tr.starts, tr.ends):
        det = int(np.sum((peak_t >= a) & (peak_t < b)))
        sp = float(np.sum((sp_t >= a) & (sp_t < b))) * HOP_S
        out.append((c, det, sp))
    return out


def window_errors(tr: Track, min_speech_s: float = MIN_WINDOW_SPEECH_S) -> list[tuple[Clip, float, float, float]]:
    """(clip holding most of the window, reported rate, true rate, window speech s) per scored window."""
    nfr = len(tr.speech)
    ft = frame_time(np.arange(nfr))
    clip_of = np.searchsorted(np.asarray(tr.starts), ft, side="right") - 1
    clip_of = np.clip(clip_of, 0, len(tr.clips) - 1)
    in_clip = ft < np.asarray(tr.ends)[clip_of]
    sp_frames = np.bincount(clip_of[tr.speech & in_clip], minlength=len(tr.clips))
    out = []
    for end, rate, sps in zip(tr.chunk_end_frame, tr.chunk_rate, tr.chunk_rate_speech):
        if rate is None or sps < min_speech_s - 1e-9:
            continue
        lo = max(0, end - tr.window_frames)
        w_sp = tr.speech[lo:end] & in_clip[lo:end]
        w_clip = clip_of[lo:end]
        t0, t1 = ft[lo] - HOP_S / 2, ft[end - 1] + HOP_S / 2
        truth = 0.0
        for ci in np.unique(w_clip):
            c = tr.clips[ci]
            if c.syl is not None:
                off = tr.starts[ci]
                for b, e in c.syl:
                    ov = min(e + off, t1, tr.ends[ci]) - max(b + off, t0)
                    if ov > 0:
                        truth += ov / (e - b)
            elif sp_frames[ci]:
                truth += c.count * float(np.sum(w_sp[w_clip == ci])) / sp_frames[ci]
        if truth <= 0:
            continue
        main = tr.clips[int(np.bincount(w_clip).argmax())]
        out.append((main, rate, truth / sps, sps))
    return out


def _group_tracks(clips: list[Clip], max_call_s: float = 120.0) -> list[list[Clip]]:
    """Clips of one speaker back to back, split into calls of at most ``max_call_s`` seconds."""
    by: dict[str, list[list[Clip]]] = {}
    for c in clips:
        calls = by.setdefault(c.group, [[]])
        dur = sum(sf.info(str(x.path)).duration for x in calls[-1])
        if calls[-1] and dur + sf.info(str(c.path)).duration > max_call_s:
            calls.append([])
        calls[-1].append(c)
    return [call for calls in by.values() for call in calls]


@dataclass
class Score:
    n_clips: int
    clip_mae: float  # mean |det - true| / true per clip, %
    clip_bias: float  # (sum det - sum true) / sum true, %
    n_windows: int
    window_mae: float  # mean |reported - true| / true per 2-3 s window, %
    window_bias: float  # mean (reported - true) / true, %
    window_ci: tuple[float, float] | None = None  # 95 % bootstrap interval of window_mae, resampling utterances


def _window_ci(groups: list[str], err: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the mean |error| when whole utterances (a window's main clip) are resampled:
    overlapping windows of one utterance are not independent."""
    names = sorted(set(groups))
    if len(names) < 5:
        return None
    idx = {n: np.flatnonzero(np.asarray(groups) == n) for n in names}
    sums = np.array([err[idx[n]].sum() for n in names])
    cnts = np.array([len(idx[n]) for n in names])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(names), size=(n_boot, len(names)))
    m = sums[pick].sum(axis=1) / cnts[pick].sum(axis=1)
    lo, hi = np.percentile(m, [2.5, 97.5])
    return round(100 * float(lo), 1), round(100 * float(hi), 1)


def evaluate(clips: list[Clip], cond: str, params: RateParams | None = None) -> Score:
    ce, we = [], []
    for call in _group_tracks(clips):
        tr = run_track(call, cond, params)
        ce += clip_errors(tr)
        we += window_errors(tr)
    det = np.array([d for _, d, _ in ce], dtype=float)
    tru = np.array([c.count for c, _, _ in ce], dtype=float)
    rep = np.array([r for _, r, _, _ in we], dtype=float)
    trr = np.array([t for _, _, t, _ in we], dtype=float)
    rel = (rep - trr) / trr if we else np.zeros(0)
    return Score(
        n_clips=len(ce),
        clip_mae=round(100 * float(np.mean(np.abs(det - tru) / tru)), 1),
        clip_bias=round(100 * float((det.sum() - tru.sum()) / tru.sum()), 1),
        n_windows=len(we),
        window_mae=round(100 * float(np.mean(np.abs(rel))), 1) if we else float("nan"),
        window_bias=round(100 * float(np.mean(rel)), 1) if we else float("nan"),
        window_ci=_window_ci([c.name for c, _, _, _ in we], np.abs(rel)) if we else None,
    )


def oracle_floor(clips: list[Clip], cond: str = "8k") -> dict[str, Score]:
    """Window MAE of a perfect detector (one nucleus at each labelled syllable's midpoint) under the
    exact (labelled) window truth and under the proportional truth used for corpora without an
    alignment: how much of a window figure is the truth's own noise.  Needs labelled clips (EmoDB)."""
    out = {}
    for truth in ("exact", "proportional"):
        ce, we = [], []
        for call in _group_tracks(clips):
            tr = run_track(call, cond)
            nu = np.zeros_like(tr.nuclei)
            for c, a, b in zip(tr.clips, tr.starts, tr.ends):
                for s0, s1 in c.syl or []:
                    t = a + 0.5 * (s0 + s1)
                    k = int(round((t - FRAME_CENTRE_S) / HOP_S)) + 1
                    if t < b and 0 <= k < len(nu):
                        nu[k] = True
            tr.nuclei = nu
            rates, sps = [], []
            for end in tr.chunk_end_frame:
                lo = max(0, end - tr.window_frames)
                sp = int(tr.speech[lo:end].sum())
                rates.append(None if sp < RateParams().min_speech_frames else nu[lo:end].sum() / (sp * HOP_S))
                sps.append(sp * HOP_S)
            tr.chunk_rate, tr.chunk_rate_speech = rates, sps
            if truth == "proportional":
                tr.clips = [replace(c, syl=None) for c in tr.clips]
            ce += clip_errors(tr)
            we += window_errors(tr)
        rel = np.array([(r - t) / t for _, r, t, _ in we])
        det = np.array([d for _, d, _ in ce], dtype=float)
        tru = np.array([c.count for c, _, _ in ce], dtype=float)
        out[truth] = Score(len(ce), round(100 * float(np.mean(np.abs(det - tru) / tru)), 1),
                           round(100 * float((det.sum() - tru.sum()) / tru.sum()), 1), len(we),
                           round(100 * float(np.mean(np.abs(rel))), 1), round(100 * float(np.mean(rel)), 1))
    return out


# ------------------------------------------------------------------------------ report / tune
def report_sets(data_dir: Path | None = None) -> dict[str, list[Clip]]:
    ai = aishell_clips(data_dir)
    em = emodb_clips(data_dir)
    return {
        "aishell odd (tune)": [c for c in ai if c.split == "tune"],
        "aishell even (test)": [c for c in ai if c.split == "test"],
        "emodb spk 03 08 09 10 11 (tune)": [c for c in em if c.split == "tune"],
        "emodb spk 12-16 (test)": [c for c in em if c.split == "test"],
        "ravdess (cross-corpus)": ravdess_clips(data_dir),
        "korean (cross-corpus)": korean_clips(data_dir),
        "polish (cross-corpus)": polish_clips(data_dir),
    }


def tune_objective(sc: dict[str, Score]) -> float:
    """What the defaults were chosen on (tune split only): Mandarin at 8 kHz first (window + half the
    per-utterance error), EmoDB at 8 kHz with half weight, 16 kHz with a quarter."""
    def m(corpus: str, conds: tuple[str, ...], attr: str) -> float:
        return float(np.mean([getattr(v, attr) for k, v in sc.items() if k.split("/")[0] == corpus
                              and k.split("/")[1] in conds]))
    tel = ("8k", "8k-ulaw")
    return (m("aishell", tel, "window_mae") + 0.5 * m("aishell", tel, "clip_mae") + 0.5 * m("emodb", tel, "window_mae")
            + 0.25 * float(np.mean([v.window_mae for k, v in sc.items() if k.endswith("/16k")])))


def tune(params_grid: dict[str, list], data_dir: Path | None = None, top: int = 15) -> list[tuple]:
    ai = [c for c in aishell_clips(data_dir) if c.split == "tune"]
    em = [c for c in emodb_clips(data_dir) if c.split == "tune"]
    base = RateParams()
    keys = list(params_grid)
    res = []
    for vals in itertools.product(*params_grid.values()):
        p = replace(base, **dict(zip(keys, vals)))
        sc = {f"{name}/{cond}": evaluate(cl, cond, p)
              for name, cl in (("aishell", ai), ("emodb", em)) for cond in CONDITIONS}
        res.append((round(tune_objective(sc), 2), dict(zip(keys, vals)),
                    {k: (v.window_mae, v.window_bias) for k, v in sc.items()}))
        print(json.dumps(res[-1]), flush=True)
    res.sort(key=lambda r: r[0])
    return res[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tune", action="store_true", help="grid-search detector parameters on the tune split")
    ap.add_argument("--grid", default=None, help='JSON grid, e.g. \'{"dip_db": [2, 3], "min_dist": [7, 9]}\'')
    ap.add_argument("--sets", default=None, help="comma-separated substrings of set names to report")
    ap.add_argument("--conds", default=",".join(CONDITIONS))
    ap.add_argument("--oracle", action="store_true", help="window MAE of a perfect detector on EmoDB (truth noise)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if a.oracle:
        for name, cl in report_sets().items():
            if name.startswith("emodb"):
                for truth, sc in oracle_floor(cl).items():
                    print(f"{name} | 8k | oracle nuclei, {truth} window truth: {sc}")
        return 0
    if a.tune:
        grid = json.loads(a.grid) if a.grid else {"lo_db": [2.0, 2.5, 3.0], "hi_db": [4.0, 5.0, 6.0],
                                                  "band_hi_hz": [12.0, 16.0, 25.0], "nucleus_aperiodicity": [0.9, 1.0]}
        for r in tune(grid):
            print("BEST", json.dumps(r))
        return 0
    conds = a.conds.split(",")
    print("| set | clips | windows (8k) | " + " | ".join(f"window MAE % {c} (bias) [95 % CI]" for c in conds)
          + " | " + " | ".join(f"clip MAE % {c} (bias)" for c in conds) + " |")
    print("|---|---|---|" + "---|" * (2 * len(conds)))
    t0 = time.process_time()
    for name, clips in report_sets().items():
        if a.sets and not any(s in name for s in a.sets.split(",")):
            continue
        if not clips:
            continue
        scores = {}
        for cond in conds:
            if cond == "16k" and _read(str(clips[0].path))[1] != 16000:
                continue
            scores[cond] = evaluate(clips, cond)
        first = next(iter(scores.values()))
        def wfmt(sc: Score) -> str:
            ci = f" [{sc.window_ci[0]}–{sc.window_ci[1]}]" if sc.window_ci else ""
            return f"{sc.window_mae} ({sc.window_bias:+}){ci}"

        wcell = " | ".join(wfmt(scores[c]) if c in scores else "–" for c in conds)
        ccell = " | ".join(f"{scores[c].clip_mae} ({scores[c].clip_bias:+})" if c in scores else "–" for c in conds)
        print(f"| {name} | {first.n_clips} | {first.n_windows} | {wcell} | {ccell} |", flush=True)
    logger.info("CPU %.1f s", time.process_time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
