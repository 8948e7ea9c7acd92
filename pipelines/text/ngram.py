"""Character 1–3-gram TF-IDF + logistic regression: the second member of the text-emotion ensemble.

It sees surface strings the transformer's subword pieces blur (她妈的, 什么破, 12315, repeated !!!) and its errors
are only partly those of the fine-tuned e5: adding its log-probabilities (weight chosen on the TRAIN calibration
slice) raised every text dev figure, but lowered escalation on held-out CPED series, so the shipped artifact
does not carry it (``python -m training.text.train_emotion --ngram-only`` adds it; figures in
models/text-emotion/MODEL_CARD.md).  ``TextEmotionModel`` uses it when ``config.json`` has an ``ensemble`` block.

Serving needs numpy only.  The features reproduce scikit-learn's ``TfidfVectorizer(analyzer="char",
ngram_range=(1, 3), sublinear_tf=True)`` (lower-casing, smoothed idf, L2 norm) and the scores its
multinomial ``LogisticRegression.predict_proba``; :func:`training.text.ngram_fit.from_sklearn` converts a fitted
pair and a test checks that both give the same probabilities.  Files in the artifact directory:

* ``ngram_vocab.json`` — the n-grams, in column order (a JSON list; n-grams may contain spaces);
* ``ngram_weights.npz`` — ``idf`` [V] float32, ``coef`` [V, C] float16 (class weights per n-gram), ``intercept`` [C].
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.errors import ModelNotAvailableError

log = logging.getLogger("nuqi.text.ngram")

VOCAB_FILE = "ngram_vocab.json"
WEIGHTS_FILE = "ngram_weights.npz"
NGRAM_RANGE = (1, 3)


def prepare(text: str) -> str:
    """What the model sees: whitespace runs collapsed (as in training), lower-cased (as TfidfVectorizer does)."""
    return " ".join(str(text).split()).lower()


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a [n, C] score matrix (float64)."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def char_ngrams(text: str, lo: int = NGRAM_RANGE[0], hi: int = NGRAM_RANGE[1]) -> list[str]:
    n_chars = len(text)
    return [text[i : i + n] for n in range(lo, min(hi, n_chars) + 1) for i in range(n_chars - n + 1)]


class CharNgramModel:
    """``log_probs(texts)`` -> [n, C] natural-log class probabilities (C = len(labels))."""

    def __init__(self, vocab: Sequence[str], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self._index = {g: i for i, g in enumerate(vocab)}
        self._idf = np.asarray(idf, dtype=np.float64)
        self._coef = np.asarray(coef)
        self._intercept = np.asarray(intercept, dtype=np.float64)
        if self._coef.shape != (len(self._index), len(self._intercept)) or self._idf.shape != (len(self._index),):
            raise ModelNotAvailableError(
                f"n-gram model shapes disagree: vocab {len(self._index)}, idf {self._idf.shape}, "
                f"coef {self._coef.shape}, intercept {self._intercept.shape}")

    @property
    def n_features(self) -> int:
        return len(self._index)

    def decision(self, text: str) -> np.ndarray:
        """Linear scores X·W + b for one text (X: sublinear tf × idf, L2-normalised)."""
        counts = Counter(g for g in char_ngrams(prepare(text)) if g in self._index)
        if not counts:
            return self._intercept.copy()
        cols = np.fromiter((self._index[g] for g in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        x = (1.0 + np.log(tf)) * self._idf[cols]
        x /= math.sqrt(float(x @ x))
        return x @ self._coef[cols].astype(np.float64) + self._intercept

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        return log_softmax(np.stack([self.decision(t) for t in texts]) if texts
                           else np.zeros((0, len(self._intercept))))

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, model_dir: Path) -> "CharNgramModel":
        try:
            vocab = json.loads((model_dir / VOCAB_FILE).read_text(encoding="utf-8"))
            with np.load(model_dir / WEIGHTS_FILE) as w:
                return cls(vocab, w["idf"], w["coef"], w["intercept"])
        except (OSError, ValueError, KeyError) as exc:
            raise ModelNotAvailableError(f"n-gram text model in {model_dir} failed to load: {exc}",
                                         model_dir=str(model_dir)) from exc

    def save(self, model_dir: Path) -> None:
        vocab = sorted(self._index, key=self._index.__getitem__)
        (model_dir / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")),
                                            encoding="utf-8")
        np.savez_compressed(model_dir / WEIGHTS_FILE, idf=self._idf.astype(np.float32),
                            coef=self._coef.astype(np.float16), intercept=self._intercept)
