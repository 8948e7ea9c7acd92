"""Chinese text emotion (6 SMP2020 classes) at serve time: onnxruntime + ``tokenizers``, no torch.

The artifact (``models/text-emotion/``: ``model.onnx`` int8, ``tokenizer.json``, ``config.json``; optionally the
character n-gram ensemble member ``ngram_*`` of :mod:`pipelines.text.ngram`) is built by
``python -m training.text.train_emotion``; see its MODEL_CARD.md.  Probabilities are temperature-calibrated
(temperatures and the n-gram weight chosen on a held-out slice of the training data, stored in ``config.json``).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from pipelines.errors import ModelNotAvailableError
from pipelines.text.ngram import CharNgramModel, log_softmax

log = logging.getLogger("nuqi.text.emotion")

LABELS = ("angry", "happy", "neutral", "sad", "fear", "surprise")
DISPLAY_ZH = {
    "angry": "愤怒",
    "happy": "积极/高兴",
    "neutral": "无情绪",
    "sad": "悲伤",
    "fear": "恐惧",
    "surprise": "惊奇",
}
_FILES = ("model.onnx", "tokenizer.json", "config.json")


@dataclass(frozen=True)
class EmotionResult:
    label: str  # argmax key
    probs: dict[str, float]  # calibrated, sums to 1
    anger: float  # == probs["angry"]
    truncated: bool  # True if the text was longer than the model's max_len and was cut


def truncate(ids: list[int], max_len: int, head: int | None = None) -> list[int]:
    """Cut an encoded ``<s> … </s>`` sequence to ``max_len`` tokens: the head then ``</s>`` (``head`` None), or
    the first ``head`` tokens (``<s>``, the prefix, the start of the text) and the last ``max_len - head``
    (the end of the text and ``</s>``): Weibo posts and long turns often end on what they feel."""
    if len(ids) <= max_len:
        return ids
    if head is None:
        return ids[: max_len - 1] + [ids[-1]]
    return ids[:head] + ids[len(ids) - (max_len - head):]


def combine(e5_scores: np.ndarray, ngram_log_probs: np.ndarray | None, weight: float,
            temperature: float) -> np.ndarray:
    """Ensemble probabilities: softmax((log p_e5 + weight · log p_ngram) / temperature) (a weighted product of
    the two members' distributions, re-calibrated).  Without the n-gram member: softmax(e5_scores)."""
    z = log_softmax(e5_scores)
    if ngram_log_probs is not None:
        z = (z + weight * ngram_log_probs) / temperature
    return np.exp(log_softmax(z))


class TextEmotionModel:
    """Load once with :meth:`load`, then call :meth:`predict` (thread-safe: onnxruntime sessions are)."""

    def __init__(self, session, tokenizer, *, labels: Sequence[str], temperature: float, max_len: int,
                 prefix: str, pad_id: int, ngram: CharNgramModel | None = None, ngram_weight: float = 0.0,
                 ensemble_temperature: float = 1.0, head_tokens: int | None = None) -> None:
        if tuple(labels) != LABELS:
            raise ModelNotAvailableError(f"text-emotion artifact has labels {list(labels)}, expected {list(LABELS)}")
        self._sess = session
        self._tok = tokenizer
        self.temperature = float(temperature)
        self.max_len = int(max_len)
        if head_tokens is not None and not 2 <= int(head_tokens) < self.max_len:
            raise ModelNotAvailableError(f"text-emotion config head_tokens {head_tokens} must lie in [2, max_len)")
        self.head_tokens = None if head_tokens is None else int(head_tokens)  # None: keep the head only
        self._prefix = prefix
        self._pad = int(pad_id)
        self._ngram = ngram
        self.ngram_weight = float(ngram_weight)
        self.ensemble_temperature = float(ensemble_temperature)

    @classmethod
    def load(cls, model_dir: Path, threads: int = 1) -> "TextEmotionModel":
        """``model_dir``: the model folder (``settings.models_dir / "text-emotion"``)."""
        model_dir = Path(model_dir)
        missing = [f for f in _FILES if not (model_dir / f).is_file()]
        if missing:
            raise ModelNotAvailableError(
                f"text-emotion model not found in {model_dir} (missing {', '.join(missing)}); build it with "
                "`python -m training.text.train_emotion --out models/text-emotion`",
                model_dir=str(model_dir), missing=missing,
            )
        try:
            cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, int(threads))
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(model_dir / cfg.get("onnx", "model.onnx")), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # corrupt file, wrong format
            raise ModelNotAvailableError(f"text-emotion model in {model_dir} failed to load: {exc}",
                                         model_dir=str(model_dir)) from exc
        ens = cfg.get("ensemble") or {}
        ngram = CharNgramModel.load(model_dir) if ens.get("ngram_weight") else None
        log.info("loaded text-emotion model from %s (T=%.3f, max_len=%d, n-gram member: %s)", model_dir,
                 cfg["temperature"], cfg["max_len"], f"weight {ens['ngram_weight']}" if ngram else "none")
        return cls(sess, tok, labels=cfg["labels"], temperature=cfg["temperature"], max_len=cfg["max_len"],
                   prefix=cfg.get("prefix", "query: "), pad_id=cfg.get("pad_id", 1), ngram=ngram,
                   ngram_weight=ens.get("ngram_weight", 0.0), ensemble_temperature=ens.get("temperature", 1.0),
                   head_tokens=cfg.get("head_tokens"))

    def _encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        encs = self._tok.encode_batch([self._prefix + " ".join(str(t).split()) for t in texts])
        seqs = [truncate(e.ids, self.max_len, self.head_tokens) for e in encs]
        return seqs, [len(e.ids) > self.max_len for e in encs]

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw (uncalibrated) logits [n, 6]."""
        seqs, _ = self._encode(texts)
        return self._run(seqs)

    def _run(self, seqs: list[list[int]]) -> np.ndarray:
        # One sequence per run: int8 dynamic quantisation scales activations per tensor, so padding and
        # batch neighbours would shift a text's scores; single runs keep every result deterministic and
        # cost nothing extra at the service's batch sizes (no padding work either).
        out = np.zeros((len(seqs), len(LABELS)), dtype=np.float32)
        for i, s in enumerate(seqs):
            ids = np.asarray([s], dtype=np.int64)
            out[i] = self._sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        return out

    def predict(self, texts: Sequence[str]) -> list[EmotionResult]:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return []
        seqs, cut = self._encode(texts)
        p = combine(self._run(seqs) / self.temperature,
                    self._ngram.log_probs(texts) if self._ngram is not None else None,
                    self.ngram_weight, self.ensemble_temperature)
        results = []
        for row, truncated in zip(p, cut):
            probs = {k: float(v) for k, v in zip(LABELS, row)}
            results.append(EmotionResult(label=LABELS[int(row.argmax())], probs=probs, anger=probs["angry"],
                                         truncated=truncated))
        return results
