"""The teacher file for distillation: a teacher's class probabilities of the training texts, keyed by a hash of
each text (no text stored).  Written by ``training.text.teacher_probs``, read by ``train_emotion --teacher``; numpy
only, so the trainer can read it without importing the tools that write it."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
