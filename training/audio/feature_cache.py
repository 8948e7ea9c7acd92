"""Per-chunk feature cache for the acoustic anger benchmark (resumable; one pickle per corpus and condition).

Every clip of every corpus goes through the service's own streaming path (:class:`SpeakerStream`) in 1 s
chunks, as a call would deliver it, under two conditions:

* ``tel8k`` — the seeded telephone channel of :mod:`training.audio.telephone` (one channel per speaker),
  8 kHz.
* ``clean`` — the clip as stored (16 kHz for EmoDB and the Taiwan set, 8 kHz FLAC for the others).

    nohup nice -n 10 env OMP_NUM_THREADS=1 python -m training.audio.feature_cache > /tmp/anger-cache.log 2>&1 &

Output: ``<cache>/<condition>/<corpus>.pkl`` = list of dicts (clip fields + ``chunks``: ChunkFeatures.to_dict()
per 1 s chunk).  A corpus whose file exists is skipped, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipelines.audio.stream import SpeakerStream
from pipelines.settings import get_settings
from training.audio import corpora, telephone

logger = logging.getLogger("nuqi.training.feature_cache")
CACHE = Path(os.environ.get("NUQI_ANGER_CACHE", "/tmp/nuqi-anger"))
CONDITIONS = ("tel8k", "clean")
CHUNK_S = 1.0
LEAD_S = 3  # whole chunks of line noise (or silence) before each clip, dropped from the cache
VERSION = 2


def stream_chunks(x: np.ndarray, sr: int, chunk_s: float = CHUNK_S, lead_s: int = LEAD_S) -> list[dict]:
    """Stream ``x`` in chunks; the first ``lead_s`` seconds (the line before the speaker talks) are not returned.

    The lead-in lets the energy VAD learn the line's noise floor as it would while the agent greets the
    caller; without it the first 3 s of every noisy clip would count as speech.
    """
    s = SpeakerStream(sr)
    n = int(round(chunk_s * sr))
    out = [s.process(x[i : i + n]).to_dict() for i in range(0, len(x), n)]
    return out[int(round(lead_s / chunk_s)):]


def _read(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def _to8k(x: np.ndarray, sr: int) -> np.ndarray:
    return x if sr == 8000 else soxr.resample(x, sr, 8000, quality="HQ")


def build_corpus(corpus: str, condition: str, clips: list[corpora.Clip], seed: int = 0) -> list[dict]:
    audio = {}
    for c in clips:
        audio[c.id] = _read(c.path)
    refs: dict[str, float] = {}
    if condition == "tel8k":
        by_spk: dict[str, list[float]] = defaultdict(list)
        for c in clips:
            if c.speaker and c.calm:
                by_spk[c.speaker].append(telephone.active_level_db(_to8k(*audio[c.id])))
        refs = {k: float(np.median(v)) for k, v in by_spk.items()}
    out = []
    t0 = time.time()
    for i, c in enumerate(clips):
        x, sr = audio.pop(c.id)
        lead = np.zeros(LEAD_S * sr)
        if condition == "tel8k":
            x8 = _to8k(x, sr)
            key = c.speaker or c.id
            ch = telephone.channel_for(key, seed)
            ref = refs.get(c.speaker) if c.speaker else None
            if ref is None:
                ref = telephone.active_level_db(x8)
            x = telephone.simulate(np.concatenate([lead[: LEAD_S * 8000], x8]), ch, ref, zlib.crc32(c.id.encode()))
            sr = 8000
            chan = {"gain_db": ch.gain_db, "snr_db": ch.snr_db, "codec": ch.codec}
        else:
            chan = {}
            if sr not in (8000, 16000):
                x, sr = soxr.resample(x, sr, 16000, quality="HQ"), 16000
            x = np.concatenate([np.zeros(LEAD_S * sr), x])
        out.append({"id": c.id, "corpus": c.corpus, "emotion": c.emotion, "speaker": c.speaker, "calm": c.calm,
                    "duration_s": len(x) / sr - LEAD_S, "sr": sr, "channel": chan, "chunks": stream_chunks(x, sr)})
        if (i + 1) % 200 == 0:
            logger.info("%s/%s: %d/%d clips (%.0f s)", condition, corpus, i + 1, len(clips), time.time() - t0)
    return out


def load_cache(condition: str, corpora_: tuple[str, ...] = corpora.ALL, cache: Path | None = None) -> list[dict]:
    recs = []
    for c in corpora_:
        p = (cache or CACHE) / condition / f"{c}.pkl"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run python -m training.audio.feature_cache")
        with open(p, "rb") as fh:
            d = pickle.load(fh)
        if d["version"] != VERSION:
            raise ValueError(f"{p}: cache version {d['version']} != {VERSION}; rebuild it")
        recs.extend(d["clips"])
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    ap.add_argument("--corpora", nargs="+", default=list(corpora.ALL))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    root = get_settings().data_dir / "speech"
    clips = corpora.load(root, tuple(a.corpora))
    for cond in a.conditions:
        for corpus in a.corpora:
            p = CACHE / cond / f"{corpus}.pkl"
            if p.exists():
                logger.info("%s exists, skipped", p)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            recs = build_corpus(corpus, cond, [c for c in clips if c.corpus == corpus], a.seed)
            tmp = p.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                pickle.dump({"version": VERSION, "condition": cond, "seed": a.seed, "clips": recs}, fh)
            tmp.replace(p)
            logger.info("%s: %d clips in %.0f s", p, len(recs), time.time() - t0)


if __name__ == "__main__":
    main()
