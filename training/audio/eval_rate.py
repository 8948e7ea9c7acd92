"""Speech-rate accuracy of the streaming syllable-nucleus detector.

Ground truth
  * EmoDB: ``labsilb/*.labsilb`` syllable labels (each non-"." label is a syllable; the time
    column is a segment's end).  The WAVs in ../shared/data are cut/padded to exactly 2.0 s,
    so the main figure uses only clips whose labelled speech ends by 1.95 s ("complete"
    clips); "all" counts, for truncated clips, the syllables whose midpoint is before 2.0 s.
  * Synthetic Mandarin from ``scripts/synth_mandarin.py`` (espeak-ng, one syllable per
    character; made on the fly under /tmp when espeak-ng + pypinyin are available).

Superseded for the detector's figures by :mod:`training.audio.eval_rate_real` (real Mandarin with known
text, own-VAD speech time, 2–3 s windows; its tune/report split is the one that chose today's parameters,
see bench/RESULTS_rate.md).  Kept for the EmoDB/synthetic per-clip view and for :func:`telephone`, the
8 kHz band the other evaluations use.  Note: EmoDB ``labsilb`` times mark where a label *starts*
(eval_rate_real reads them so); this module's speaking time treats them as ends.

Each clip is streamed in 1 s chunks (+0.3 s of trailing silence so the 38 ms frame lag and the
one-frame peak confirmation flush), at 16 kHz and at 8 kHz telephone band (soxr to 8 kHz,
4th-order Butterworth 300–3400 Hz).  Metrics: mean absolute % error of the syllable count per
clip (count MAPE) and of the articulation rate (syllables / speaking time; EmoDB truth =
syllables / summed duration of labelled syllables).

    .venv/bin/python -m training.audio.eval_rate            # report
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

from pipelines.audio.rate import RateParams
from pipelines.audio.stream import SpeakerStream
from pipelines.settings import REPO_ROOT, get_settings

logger = logging.getLogger("nuqi.audio.eval_rate")

TUNE_SPEAKERS = {"03", "08", "09", "10", "11"}
_TEL = butter(4, [300, 3400], btype="band", fs=8000, output="sos")


def telephone(x16: np.ndarray) -> np.ndarray:
    """16 kHz → 8 kHz telephone band (what the 8 kHz evaluations use)."""
    return sosfilt(_TEL, soxr.resample(x16, 16000, 8000))


@dataclass
class Item:
    path: Path
    group: str  # speaker / corpus tag
    count: int  # true syllables in the audio
    speak_s: float | None  # labelled syllable time (EmoDB) or None
    complete: bool


def read_labsilb(p: Path) -> list[tuple[float, float, str]]:
    """(start, end, label) segments of an xlabel file."""
    text = p.read_text(encoding="latin-1")
    body = text.split("\n#", 1)[1] if "\n#" in text else text
    segs, prev = [], 0.0
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        t = float(parts[0])
        segs.append((prev, t, parts[2]))
        prev = t
    return segs


def emodb_items(limit_end: float = 2.0) -> list[Item]:
    root = get_settings().data_dir / "speech" / "emodb"
    items = []
    for wav in sorted((root / "wav").glob("*.wav")):
        lab = root / "labsilb" / (wav.stem + ".labsilb")
        if not lab.exists():
            continue
        segs = [s for s in read_labsilb(lab) if s[2] != "."]
        if not segs:
            continue
        complete = segs[-1][1] <= limit_end - 0.05
        inside = [s for s in segs if 0.5 * (s[0] + s[1]) < limit_end]
        speak = sum(min(e, limit_end) - b for b, e, _ in inside)
        items.append(Item(wav, wav.stem[:2], len(inside), speak, complete))
    return items


def synth_items(n: int = 120) -> list[Item]:
    out = Path(f"/tmp/nuqi_synth_rate_{n}")
    man = out / "manifest.csv"
    if not man.exists():
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        try:
            from synth_mandarin import espeak_available, make_corpus
        except ImportError as e:
            logger.warning("synthetic Mandarin unavailable: %s", e)
            return []
        if not espeak_available():
            logger.warning("espeak-ng not installed: synthetic Mandarin skipped")
            return []
        make_corpus(out, n=n, sample_rate=16000, seed=123)
    items = []
    with open(man, encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            items.append(Item(out / r["file"], "synth-" + r["style"], int(r["syllables"]), None, True))
    return items


def run_clip(x: np.ndarray, sr: int, params: RateParams | None = None) -> tuple[int, float]:
    """(syllables, speech seconds) of a clip streamed in 1 s chunks."""
    s = SpeakerStream(sr)
    if params is not None:
        s._rate_params = params
        s._det.params = params
    x = np.concatenate([x, np.zeros(int(0.3 * sr))])
    syl, sp = 0, 0.0
    for i in range(0, len(x), sr):
        f = s.process(x[i : i + sr])
        syl += f.syllables
        sp += f.speech_s
    return syl, sp


_cache: dict[tuple[str, int], np.ndarray] = {}


def load(item: Item, sr: int) -> np.ndarray:
    key = (str(item.path), sr)
    if key not in _cache:
        x, fs = sf.read(item.path, dtype="float64")
        if x.ndim > 1:
            x = x.mean(axis=1)
        if fs != 16000:
            x = soxr.resample(x, fs, 16000)
        _cache[key] = telephone(x) if sr == 8000 else x
    return _cache[key]


def evaluate(items: list[Item], sr: int, params: RateParams | None = None) -> dict:
    ape, rape = [], []
    det_total = true_total = 0
    pooled: dict[str, list[int]] = {}
    for it in items:
        syl, sp = run_clip(load(it, sr), sr, params)
        ape.append(abs(syl - it.count) / it.count)
        g = pooled.setdefault(it.group, [0, 0])
        g[0] += syl
        g[1] += it.count
        det_total += syl
        true_total += it.count
        if it.speak_s and sp > 0:
            rape.append(abs(syl / sp - it.count / it.speak_s) / (it.count / it.speak_s))
    return {
        "n": len(items),
        "count_mape_pct": round(100 * float(np.mean(ape)), 1),
        "total_count_err_pct": round(100 * (det_total - true_total) / max(true_total, 1), 1),
        "rate_mape_pct": round(100 * float(np.mean(rape)), 1) if rape else None,
        # counts summed per speaker (EmoDB) / style (synthetic): what a longer window sees
        "pooled_mape_pct": round(100 * float(np.mean([abs(d - t) / t for d, t in pooled.values()])), 1),
        "n_groups": len(pooled),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    em = emodb_items()
    tune_set = [i for i in em if i.group in TUNE_SPEAKERS and i.complete]
    synth = synth_items(120)
    sets = {
        "emodb tune spk, complete clips": tune_set,
        "synthetic Mandarin 0-59 (tune)": synth[:60],
        "emodb test spk, complete clips": [i for i in em if i.group not in TUNE_SPEAKERS and i.complete],
        "emodb test spk, all clips (truncated at 2 s)": [i for i in em if i.group not in TUNE_SPEAKERS],
        "synthetic Mandarin 60-119 (espeak-ng, test)": synth[60:],
    }
    print("| set | rate | clips | count MAPE % (per clip) | total count err % | articulation-rate MAPE % (per clip) "
          "| count MAPE % pooled per speaker/style (groups) |")
    print("|---|---|---|---|---|---|---|")
    for name, items in sets.items():
        if not items:
            continue
        for sr in (8000, 16000):
            m = evaluate(items, sr)
            print(f"| {name} | {sr} | {m['n']} | {m['count_mape_pct']} | {m['total_count_err_pct']} "
                  f"| {m['rate_mape_pct']} | {m['pooled_mape_pct']} ({m['n_groups']}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
