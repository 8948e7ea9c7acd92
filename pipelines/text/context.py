"""Dialogue-context text anger: score a turn together with the one or two turns before it (either role).

A logistic-regression stacker (``models/text-context/``, built by ``python -m training.text.train_context``;
see its MODEL_CARD.md) over

* the shipped utterance model's calibrated log-probabilities (:mod:`pipelines.text.emotion`) of the current turn
  and of each previous turn (those of a previous turn also times "same speaker as the current turn"),
* whether each previous turn exists and whether its speaker is the current one,
* hashed character 1–3-gram features (sublinear TF, L2-normalised) of the current turn and, in their own hash
  spaces, of the previous turn and the one before it;
* optionally (config ``ngram_member``), the six log-probabilities of the text-emotion char n-gram TF-IDF member
  (:mod:`pipelines.text.ngram`, trained on the utterance model's Weibo data and stored in this artifact) of the
  current turn and of the previous turn.

The model is linear, so what a previous turn contributes through its words is one number per position
(``ngram_as_prev1``/``ngram_as_prev2``), computed once when that turn is scored and kept in the call's memory
(:meth:`ContextEmotionModel.memory`) with its role and log-probabilities: a turn costs one utterance-model call,
and the call state keeps no text of earlier turns.  The output is a calibrated P(anger); :func:`with_anger`
re-weights the utterance model's six probabilities so that ``angry`` carries it (the others keep their ratios).
"""
from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import ModelNotAvailableError
from pipelines.text.ngram import VOCAB_FILE, WEIGHTS_FILE, CharNgramModel

log = logging.getLogger("nuqi.text.context")

LABELS = ("angry", "happy", "neutral", "sad", "fear", "surprise")
CONTEXT_TURNS = 2
WINDOW = 8  # earlier turns a call keeps in memory (for the optional window summary)
LOGP_FLOOR = math.log(1e-4)
N_TURN = 6 + CONTEXT_TURNS * (2 + 6 + 6)  # current logp; per previous turn: present, same, logp, logp·same
# window summary (config "window" > CONTEXT_TURNS): the speaker's own latest earlier turn beyond the previous two
# (present, logp), mean and max P(angry) of the earlier turns in the window, their number / WINDOW
N_WINDOW_SUMMARY = 1 + 6 + 3
# n-gram member (config "ngram_member"): its log-probabilities of the current turn and of the previous turn
N_MEMBER = 12
N_DENSE = N_TURN + N_WINDOW_SUMMARY + N_MEMBER
_FILES = ("config.json", "weights.npz")
_MEMBER_FILES = (VOCAB_FILE, WEIGHTS_FILE)


def normalise(text: str) -> str:
    return " ".join(str(text).split())


def char_ngrams(text: str, n_max: int = 3, dim: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Hashed char 1..n_max-grams of ``text``: (bucket indices, values), sublinear TF, L2-normalised.
    crc32 of the UTF-8 n-gram, so training and serving hash identically on every platform."""
    t = normalise(text)
    counts: dict[int, int] = {}
    for n in range(1, n_max + 1):
        for i in range(len(t) - n + 1):
            h = zlib.crc32(t[i:i + n].encode("utf-8")) % dim
            counts[h] = counts.get(h, 0) + 1
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    val = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
    return idx, (val / np.linalg.norm(val)).astype(np.float32)


def log_probs(probs: dict[str, float] | Sequence[float]) -> np.ndarray:
    p = np.array([probs[k] for k in LABELS] if isinstance(probs, dict) else list(probs), dtype=np.float64)
    return np.maximum(np.log(np.maximum(p, 1e-12)), LOGP_FLOOR)


def dense_features(cur_logp: np.ndarray, prev: Sequence[tuple[np.ndarray, bool]], window: int = CONTEXT_TURNS,
                   member: tuple[np.ndarray, np.ndarray | None] | None = None) -> np.ndarray:
    """``prev``: (log-probabilities, same speaker as the current turn) of the earlier turns, newest first;
    the first CONTEXT_TURNS give the per-turn block, the first ``window`` the summary block (zeros when
    ``window <= CONTEXT_TURNS``).  ``member``: the n-gram member's floored log-probabilities of the current turn
    and of the previous one (None: no previous turn); zeros when the model has no member."""
    prev = list(prev)
    x = np.zeros(N_DENSE, dtype=np.float64)
    x[:6] = cur_logp
    for k, (lp, same) in enumerate(prev[:CONTEXT_TURNS]):
        o = 6 + k * 14
        x[o] = 1.0
        x[o + 1] = float(same)
        x[o + 2:o + 8] = lp
        x[o + 8:o + 14] = lp * float(same)
    if window > CONTEXT_TURNS and prev:
        win = prev[:window]
        own = next((lp for lp, same in win[CONTEXT_TURNS:] if same), None)
        if own is not None:
            x[N_TURN] = 1.0
            x[N_TURN + 1:N_TURN + 7] = own
        pa = np.exp([lp[0] for lp, _ in win])
        x[N_TURN + 7] = float(pa.mean())
        x[N_TURN + 8] = float(pa.max())
        x[N_TURN + 9] = len(win) / WINDOW
    if member is not None:
        o = N_TURN + N_WINDOW_SUMMARY
        x[o:o + 6] = member[0]
        if member[1] is not None:
            x[o + 6:o + 12] = member[1]
    return x


def with_anger(probs: dict[str, float], anger: float) -> dict[str, float]:
    """The six probabilities with ``angry`` set to ``anger`` and the rest scaled to share 1 - anger."""
    rest = sum(v for k, v in probs.items() if k != "angry")
    out = {}
    for k in LABELS:
        if k == "angry":
            out[k] = float(anger)
        else:
            out[k] = float(probs[k] * (1.0 - anger) / rest) if rest > 0 else (1.0 - anger) / (len(LABELS) - 1)
    return out


@dataclass(frozen=True)
class ContextResult:
    anger: float  # calibrated P(anger | turn, earlier turns)
    angry: bool  # anger >= the F1-optimal threshold chosen on the training series
    turns: int  # earlier turns used (1 .. window)
    memory: dict[str, Any]  # what the call keeps of this turn for the next ones (no text)


class ContextEmotionModel:
    """Load once with :meth:`load`; :meth:`score` one turn given the memories of the turns before it."""

    def __init__(self, *, dim: int, n_max: int, intercept: float, w_dense: np.ndarray, w_cur: np.ndarray,
                 w_prev: list[np.ndarray], threshold: float, window: int = CONTEXT_TURNS,
                 calibration: tuple[float, float] = (1.0, 0.0), member: CharNgramModel | None = None) -> None:
        self.dim, self.n_max = int(dim), int(n_max)
        self.intercept = float(intercept)
        self.w_dense = np.asarray(w_dense, dtype=np.float64)
        self.w_cur = w_cur
        self.w_prev = w_prev
        self.threshold = float(threshold)
        self.window = int(window)
        self.cal_a, self.cal_b = (float(v) for v in calibration)  # Platt scaling of the stacker's logit
        self.member = member  # the text-emotion n-gram member (None: the model does not use it)
        if self.w_dense.shape != (N_DENSE,) or len(w_prev) != CONTEXT_TURNS:
            raise ModelNotAvailableError("text-context weights do not match this code's feature layout")

    @classmethod
    def load(cls, model_dir: Path) -> "ContextEmotionModel":
        model_dir = Path(model_dir)
        missing = [f for f in _FILES if not (model_dir / f).is_file()]
        cfg_path = model_dir / "config.json"
        if not missing and json.loads(cfg_path.read_text(encoding="utf-8")).get("ngram_member"):
            missing = [f for f in _MEMBER_FILES if not (model_dir / f).is_file()]
        if missing:
            raise ModelNotAvailableError(
                f"text-context model not found in {model_dir} (missing {', '.join(missing)}); build it with "
                "`python -m training.text.train_context`", model_dir=str(model_dir), missing=missing)
        try:
            cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            with np.load(model_dir / "weights.npz") as z:
                dim = int(cfg["hash_dim"])

                def dense(name: str) -> np.ndarray:
                    w = np.zeros(dim, dtype=np.float32)
                    w[z[f"{name}_idx"]] = z[f"{name}_val"]
                    return w

                model = cls(dim=dim, n_max=int(cfg["ngram_max"]), intercept=float(z["intercept"]),
                            w_dense=z["w_dense"], w_cur=dense("cur"), w_prev=[dense("prev1"), dense("prev2")],
                            threshold=float(cfg["threshold"]), window=int(cfg.get("window", CONTEXT_TURNS)),
                            calibration=(cfg["calibration"]["a"], cfg["calibration"]["b"]),
                            member=CharNgramModel.load(model_dir) if cfg.get("ngram_member") else None)
        except ModelNotAvailableError:
            raise
        except Exception as exc:  # corrupt file
            raise ModelNotAvailableError(f"text-context model in {model_dir} failed to load: {exc}",
                                         model_dir=str(model_dir)) from exc
        log.info("loaded text-context model from %s (threshold %.3f)", model_dir, model.threshold)
        return model

    def member_logp(self, text: str) -> np.ndarray | None:
        """The n-gram member's log-probabilities of ``text``, floored as the utterance model's (None: no member)."""
        if self.member is None:
            return None
        return np.maximum(self.member.log_probs([text])[0], LOGP_FLOOR)

    def _memory(self, role: str, logp: np.ndarray, idx: np.ndarray, val: np.ndarray,
                member: np.ndarray | None) -> dict[str, Any]:
        mem = {"role": role, "logp": [round(float(v), 5) for v in logp],
               "ngram_as_prev1": float(val @ self.w_prev[0][idx]), "ngram_as_prev2": float(val @ self.w_prev[1][idx])}
        if member is not None:
            mem["member_logp"] = [round(float(v), 5) for v in member]
        return mem

    def memory(self, role: str, text: str, probs: dict[str, float]) -> dict[str, Any]:
        """What a turn leaves for the turns after it: role, log-probabilities, its words' contribution when it
        is the previous turn (``ngram_as_prev1``) or the one before (``ngram_as_prev2``), and the n-gram
        member's log-probabilities (``member_logp``, when the model has the member)."""
        idx, val = char_ngrams(text, self.n_max, self.dim)
        return self._memory(role, log_probs(probs), idx, val, self.member_logp(text))

    def score(self, role: str, text: str, probs: dict[str, float], history: Sequence[dict[str, Any]]
              ) -> ContextResult:
        """``history``: memories of the earlier turns of the call, oldest first (the last ``window`` are used;
        keep at most :data:`WINDOW`)."""
        prev = list(history)[-max(self.window, CONTEXT_TURNS):][::-1]  # newest first
        idx, val = char_ngrams(text, self.n_max, self.dim)
        member = self.member_logp(text)
        prev_member = None
        if prev and prev[0].get("member_logp") is not None:
            prev_member = np.asarray(prev[0]["member_logp"], dtype=np.float64)
        x = dense_features(log_probs(probs), [(np.asarray(m["logp"], dtype=np.float64), m["role"] == role)
                                              for m in prev], self.window,
                           (member, prev_member) if member is not None else None)
        z = self.intercept + float(x @ self.w_dense) + float(val @ self.w_cur[idx])
        z += sum(float(m[f"ngram_as_prev{k + 1}"]) for k, m in enumerate(prev[:CONTEXT_TURNS]))
        p = 1.0 / (1.0 + math.exp(-(self.cal_a * z + self.cal_b)))
        mem = self._memory(role, x[:6], idx, val, member)
        return ContextResult(anger=p, angry=p >= self.threshold, turns=len(prev), memory=mem)
