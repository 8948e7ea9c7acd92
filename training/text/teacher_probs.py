"""A teacher's probabilities of every training text, for distilling an ensemble into one model (issue 15).

The teacher is one or more served text-emotion artifacts (``TextEmotionModel.load``: int8 ONNX, one text per run);
with several, their ensemble (the mean of the calibrated log-probabilities, as ``compare_models``).  The file
holds, per distinct training text (SMP2020 usual + virus train and NLPCC 2013, the pool ``train_emotion`` draws
its training texts and calibration slice from), a 16-hex-digit sha1 of the text and six float16 probabilities:
about 1 MB for 49k texts and no text, so it can be kept when the teacher models themselves cannot (a fine-tuned
candidate lives in a host's /tmp).  ``train_emotion --teacher FILE --distill-alpha A`` trains on it.

    OMP_NUM_THREADS=1 python -m training.text.teacher_probs models/text-emotion CANDIDATE_DIR --out teacher.npz
    # ≈ 4 min per model on one thread
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("nuqi.text.teacher_probs")


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16].encode()


def write_teacher(probs: np.ndarray, texts: Sequence[str], out: Path, about: dict) -> None:
    """Store ``probs`` [n, classes] keyed by the texts' hashes (duplicates keep their first row)."""
    keys, rows, seen = [], [], set()
    for t, p in zip(texts, probs):
        k = text_key(t)
        if k not in seen:
            seen.add(k)
            keys.append(k)
            rows.append(p)
    np.savez_compressed(out, keys=np.asarray(keys, dtype="S16"), probs=np.asarray(rows, dtype=np.float16),
                        about=np.asarray(json.dumps(about, ensure_ascii=False)))


def load_teacher(path: Path, texts: Sequence[str]) -> np.ndarray:
    """The teacher's probabilities of ``texts`` [n, classes] (float32, rows renormalised after float16 storage);
    raises ``ValueError`` naming how many texts the file does not hold."""
    with np.load(path) as z:
        index = {k: i for i, k in enumerate(z["keys"].tolist())}
        probs = z["probs"].astype(np.float32)
    rows = [index.get(text_key(t)) for t in texts]
    missing = sum(r is None for r in rows)
    if missing:
        raise ValueError(f"teacher file {path} holds no probabilities for {missing} of {len(texts)} training texts "
                         "(written for other data?)")
    out = probs[np.asarray(rows)]
    return out / out.sum(1, keepdims=True)


def training_pool(root: Path) -> list[str]:
    from training.text.train_emotion import load_nlpcc, load_smp_train

    return list(dict.fromkeys(t for ts in (load_smp_train(root), load_nlpcc(root)) for t in ts.texts))


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.settings import get_settings
    from pipelines.text.emotion import TextEmotionModel
    from training.text.compare_models import ensemble
    from training.text.train_emotion import served_log_probs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="teacher artifact dirs (several: their ensemble)")
    ap.add_argument("--out", type=Path, required=True, help="the teacher file (.npz)")
    ap.add_argument("--data-dir", type=Path, default=None, help="text data root (default: <data_dir>/text)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    texts = training_pool(a.data_dir or get_settings().data_dir / "text")
    lps = []
    for d in a.models:
        lps.append(served_log_probs(TextEmotionModel.load(d), texts))
        log.info("%s: %d texts scored", d, len(texts))
    probs = np.exp(ensemble(lps))
    write_teacher(probs, texts, a.out, {"models": [str(d) for d in a.models], "n": len(texts),
                                        "how": "mean of the served models' calibrated log-probabilities"})
    log.info("wrote %s (%.2f MB)", a.out, a.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
