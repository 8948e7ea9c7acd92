"""Whisper-base encoder embeddings of the emotion corpora (issue 13, option c): do they separate anger from the other
emotions across corpora better than the hand-crafted chunk features?

Every clip of every corpus, under the same seeded telephone channel as the feature cache (``tel8k``: one channel per
speaker, :mod:`training.audio.telephone`), is upsampled to 16 kHz and its first ``--seconds`` (default 3 s: the
"cold" first chunks of a turn) go through the Whisper base encoder shipped for ASR (CTranslate2, int8, one thread,
*unpadded*: the encoder accepts any length up to 30 s, ~25 ms per second of audio here).  The encoder output (50
frames/s x 512) is pooled to mean and standard deviation over the frames (1024 numbers per clip) and cached as one
``.npz`` per corpus (resumable: a corpus whose file exists is skipped)::

    nohup nice -n 10 env OMP_NUM_THREADS=1 python -m training.audio.whisper_embed > /tmp/whisper-embed.log 2>&1 &

The leave-one-corpus-out evaluation of these embeddings is :mod:`training.audio.loco_embed`.
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
import soxr

from pipelines.asr.model_assembly import default_model_dir
from pipelines.settings import get_settings
from training.audio import corpora, telephone
from training.audio.feature_cache import _read, _to8k

logger = logging.getLogger("nuqi.training.whisper_embed")
CACHE = Path(os.environ.get("NUQI_WHISPER_EMB_CACHE", "/tmp/nuqi-whisper-emb"))
VERSION = 1


class Encoder:
    """The ASR model's encoder alone: 16 kHz float audio -> (frames, 512) at 50 frames/s."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="int8",
                                                intra_threads=threads)
        self.fe = FeatureExtractor(feature_size=self.model.n_mels)

    def __call__(self, x16: np.ndarray) -> np.ndarray:
        mel = self.fe(x16.astype(np.float32), padding=0)  # (n_mels, frames), 100 frames/s
        mel = mel[:, : (mel.shape[1] // 2) * 2]
        out = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None])), to_cpu=True)
        return np.asarray(out)[0]


def pool(h: np.ndarray) -> np.ndarray:
    return np.concatenate([h.mean(axis=0), h.std(axis=0)]).astype(np.float32)


def render_tel8k(clips: list[corpora.Clip], seed: int = 0) -> dict[str, np.ndarray]:
    """The clips through their speaker's seeded telephone channel, as the feature cache renders them (no lead-in)."""
    audio = {c.id: _to8k(*_read(c.path)) for c in clips}
    by_spk: dict[str, list[float]] = defaultdict(list)
    for c in clips:
        if c.speaker and c.calm:
            by_spk[c.speaker].append(telephone.active_level_db(audio[c.id]))
    refs = {k: float(np.median(v)) for k, v in by_spk.items()}
    out = {}
    for c in clips:
        x8 = audio.pop(c.id)
        ch = telephone.channel_for(c.speaker or c.id, seed)
        ref = refs.get(c.speaker) if c.speaker else None
        out[c.id] = telephone.simulate(x8, ch, telephone.active_level_db(x8) if ref is None else ref,
                                       zlib.crc32(c.id.encode()))
    return out


def embed_corpus(enc: Encoder, clips: list[corpora.Clip], seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    x8 = render_tel8k(clips, seed)
    emb, t0 = [], time.time()
    for i, c in enumerate(clips):
        x16 = soxr.resample(x8[c.id][: int(seconds * 8000)], 8000, 16000, quality="HQ")
        emb.append(pool(enc(x16)))
        if (i + 1) % 200 == 0:
            logger.info("%s: %d/%d clips (%.0f s)", c.corpus, i + 1, len(clips), time.time() - t0)
    return {
        "version": np.array(VERSION), "id": np.array([c.id for c in clips]),
        "corpus": np.array([c.corpus for c in clips]), "emotion": np.array([c.emotion for c in clips]),
        "speaker": np.array([c.speaker for c in clips]), "emb": np.stack(emb),
    }


def load(corpora_: tuple[str, ...] = corpora.ALL, cache: Path | None = None) -> dict[str, np.ndarray]:
    parts = []
    for c in corpora_:
        p = (cache or CACHE) / "tel8k" / f"{c}.npz"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run python -m training.audio.whisper_embed")
        d = dict(np.load(p))
        if int(d["version"]) != VERSION:
            raise ValueError(f"{p}: version {int(d['version'])} != {VERSION}; rebuild it")
        parts.append(d)
    return {k: np.concatenate([d[k] for d in parts]) for k in ("id", "corpus", "emotion", "speaker", "emb")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", nargs="+", default=list(corpora.ALL))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = get_settings()
    enc = Encoder(default_model_dir(settings))
    clips = corpora.load(settings.data_dir / "speech", tuple(a.corpora))
    for corpus in a.corpora:
        p = CACHE / "tel8k" / f"{corpus}.npz"
        if p.exists():
            logger.info("%s exists, skipped", p)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        d = embed_corpus(enc, [c for c in clips if c.corpus == corpus], a.seconds, a.seed)
        tmp = p.with_name(p.stem + ".tmp.npz")
        np.savez(tmp, **d)
        tmp.replace(p)
        logger.info("%s: %d clips in %.0f s -> %s", corpus, len(d["id"]), time.time() - t0, p)


if __name__ == "__main__":
    main()
