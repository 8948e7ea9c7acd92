"""Log-mel cache of the emotion corpora for the CNN candidate of issue 13 (option 3).

Same renderings as :mod:`training.audio.feature_cache` (``tel8k``: the seeded telephone channel per speaker,
after 3 s of line; ``clean``: the clip as stored, at 8 kHz), then 40 log-mel bands (100–3800 Hz, 25 ms Hann
frames every 10 ms, FFT 256) of the first ``MAX_S`` seconds of each clip, float16, one ``.npz`` per corpus and
condition under ``/tmp/nuqi-mel/<condition>/``.

    nohup nice -n 10 env OMP_NUM_THREADS=1 python -m training.audio.mel_cache > /tmp/mel-cache.log 2>&1 &
"""
from __future__ import annotations

import argparse
import logging
import os
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipelines.audio import logmel
from pipelines.settings import get_settings
from training.audio import corpora, telephone
from training.audio.feature_cache import LEAD_S, _read, _to8k

logger = logging.getLogger("nuqi.training.mel_cache")
CACHE = Path(os.environ.get("NUQI_MEL_CACHE", "/tmp/nuqi-mel"))
SR, N_MEL = logmel.SR, logmel.N_MEL
MAX_S = 6.0
log_mel = logmel.log_mel  # the service's log-mel (pipelines.audio.logmel), so training and serving frame alike


def build(corpus: str, condition: str, clips: list[corpora.Clip], seed: int = 0) -> dict:
    refs: dict[str, float] = {}
    audio = {c.id: _to8k(*_read(c.path)) for c in clips}
    if condition == "tel8k":
        by: dict[str, list[float]] = defaultdict(list)
        for c in clips:
            if c.speaker and c.calm:
                by[c.speaker].append(telephone.active_level_db(audio[c.id]))
        refs = {k: float(np.median(v)) for k, v in by.items()}
    ids, mels = [], []
    for c in clips:
        x8 = audio.pop(c.id)
        if condition == "tel8k":
            ch = telephone.channel_for(c.speaker or c.id, seed)
            ref = refs.get(c.speaker) if c.speaker else None
            if ref is None:
                ref = telephone.active_level_db(x8)
            y = telephone.simulate(np.concatenate([np.zeros(LEAD_S * SR), x8]), ch, ref, zlib.crc32(c.id.encode()))
            x8 = y[LEAD_S * SR :]
        ids.append(c.id)
        mels.append(log_mel(x8[: int(MAX_S * SR)]).astype(np.float16))
    lens = np.array([len(m) for m in mels])
    return {"id": np.array(ids), "len": lens, "mel": np.concatenate(mels)}


def load(condition: str, corpora_: tuple[str, ...] = corpora.ALL) -> dict[str, np.ndarray]:
    """clip id -> (frames, N_MEL) float32."""
    out = {}
    for c in corpora_:
        d = np.load(CACHE / condition / f"{c}.npz")
        off = np.concatenate([[0], np.cumsum(d["len"])])
        for i, cid in enumerate(d["id"]):
            out[str(cid)] = d["mel"][off[i] : off[i + 1]].astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conditions", nargs="+", default=["tel8k", "clean"])
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    clips = corpora.load(get_settings().data_dir / "speech")
    for cond in a.conditions:
        for corpus in corpora.ALL:
            p = CACHE / cond / f"{corpus}.npz"
            if p.exists():
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            d = build(corpus, cond, [c for c in clips if c.corpus == corpus])
            np.savez(p.with_suffix(".tmp.npz"), **d)
            p.with_suffix(".tmp.npz").replace(p)
            logger.info("%s: %d clips in %.0f s", p, len(d["id"]), time.time() - t0)


if __name__ == "__main__":
    main()
