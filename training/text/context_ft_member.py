"""Does a dialogue-fine-tuned copy of the utterance encoder add to the context stacker?  (Issue 15; CV only.)

The context model's card names one untried road to CPED anger F1 0.40: the P of the utterance encoder fine-tuned
on CPED turns (``training.text.cped_finetune``: ``turn｜previous turn``, six classes) as one more feature of the
(c3) stacker.  A fine-tuned encoder's scores of the turns it was trained on are useless as training features, so
the cross-validation is nested, over the TRAIN series 32/39/40 only (the held-out series 44/45 are never read):

* for fold s (training series A, B) the test turns of s get the scores of an encoder fine-tuned on A + B;
* the training turns of A get the scores of an encoder fine-tuned on B alone, those of B of one fine-tuned on A.

So six fine-tunes (three single series, three pairs), each cached as ``{uid: 6 log-probabilities}`` under
``--cache`` (a stopped run resumes at the next encoder).  Then the (c3) reference and each candidate (the encoder's
six log-probabilities of the turn, scale 1 or 0.3; its logit P(angry) alone) are scored by the same
leave-one-series-out logistic regression (best C of the grid, pooled out-of-fold F1 at its best threshold)::

    OMP_NUM_THREADS=2 python -m training.text.context_ft_member --threads 2 --out /tmp/nuqi_fusion_cache/ctx_ft.json
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.settings import get_settings
from pipelines.text.context import WINDOW
from training.fusion.cped import CACHE_DIR, TUNE_TV, load_dialogues, text_cues
from training.text.context_search import cv_record, log_best, member_block, rows_with_history, write_results
from training.text.cped_finetune import add_finetune_args, fine_tune_scores
from training.text.train_context import auc, best_f1, features, fit

log = logging.getLogger("nuqi.text.context_ft_member")
FLOOR = math.log(1e-4)


def subsets() -> list[tuple[str, ...]]:
    """The encoders the nested CV needs: each training series alone, and each pair."""
    singles = [(s,) for s in TUNE_TV]
    pairs = [encoder_for(s, None) for s in TUNE_TV]
    return singles + pairs


def encoder_for(series: str, held: str | None, plain: bool = False) -> tuple[str, ...]:
    """The encoder whose scores a turn of ``series`` gets in the fold that holds out ``held`` (None: the turn is
    the fold's test turn).  Nested: never an encoder fine-tuned on the turn's series or on ``held``; ``plain``:
    the pair that leaves out the turn's series (it may include ``held``)."""
    if held is None or plain:
        return tuple(s for s in TUNE_TV if s != series)
    return tuple(s for s in TUNE_TV if s not in (series, held))


def ft_block(rows: list[dict], lp: dict[str, list[float]], variant: str) -> np.ndarray:
    """Dense features of the fine-tuned encoder for ``rows``: ``logp`` its six floored log-probabilities of the
    turn, ``angry`` its logit P(angry) alone."""
    x = np.maximum(np.array([lp[r["uid"]] for r in rows]), FLOOR)
    if variant == "angry":
        p = np.clip(np.exp(x[:, :1]), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))
    return x


def nested_oof(X_base, rows, y, groups, scores: dict[tuple[str, ...], dict], variant: str | None, scale: float,
               C: float, seed: int, plain: bool = False) -> np.ndarray:
    """Leave-one-series-out P(anger); the fine-tuned encoder's features of every row come from an encoder that
    was not fine-tuned on that row's series nor on the fold's test series.  ``plain``: the training rows' features
    come from the pair encoder that left out their own series (usual stacking: that encoder saw the fold's test
    series, so the CV figure is optimistic)."""
    from scipy import sparse

    oof = np.zeros(len(y))
    for held in TUNE_TV:
        te = np.flatnonzero(groups == held)
        tr = np.flatnonzero(groups != held)
        if variant is None:
            Xtr, Xte = X_base[tr], X_base[te]
        else:
            lp_tr = {r["uid"]: scores[encoder_for(r["tv"], held, plain)][r["uid"]] for r in (rows[i] for i in tr)}
            f_tr = ft_block([rows[i] for i in tr], lp_tr, variant) * scale
            f_te = ft_block([rows[i] for i in te], scores[encoder_for(held, None)], variant) * scale
            Xtr = sparse.hstack([X_base[tr], sparse.csr_matrix(f_tr)]).tocsr()
            Xte = sparse.hstack([X_base[te], sparse.csr_matrix(f_te)]).tocsr()
        oof[te] = fit(Xtr, y[tr], C, "balanced", seed).predict_proba(Xte)[:, 1]
    return oof


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.text.context_ft_member", description=__doc__.split("\n")[0])
    add_finetune_args(ap)
    ap.add_argument("--C", nargs="*", type=float, default=[0.03, 0.1, 0.3])
    ap.add_argument("--cache", type=Path, default=CACHE_DIR / "cped_ft")
    ap.add_argument("--out", type=Path, default=CACHE_DIR / "ctx_ft.json")
    ap.add_argument("--plain", action="store_true",
                    help="training rows' features from the pair encoders (usual stacking, optimistic), not nested")
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from scipy import sparse

    from pipelines.text.ngram import CharNgramModel

    scores: dict[tuple[str, ...], dict] = {}
    for sub in subsets():
        path = args.cache / f"ft_{'_'.join(sub)}.json"
        if not path.is_file():
            t0 = time.time()
            others = [s for s in TUNE_TV if s not in sub]
            lp = fine_tune_scores(sub, others, epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, seed=args.seed,
                                  threads=args.threads)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(lp), encoding="utf-8")
            log.info("encoder fine-tuned on %s: %d turns scored, %.1f min", sub, len(lp), (time.time() - t0) / 60)
        scores[sub] = json.loads(path.read_text(encoding="utf-8"))

    dialogues = load_dialogues()
    cues = text_cues(dialogues)
    rows = [r for r in rows_with_history(dialogues, cues) if r["tv"] in TUNE_TV]  # TRAIN series only
    y = np.array([r["y"] for r in rows])
    groups = np.array([r["tv"] for r in rows])
    member = CharNgramModel.load(get_settings().models_dir / "text-context")
    texts = {r["uid"]: r["text"] for r in rows}
    member_lp = dict(zip(texts, member.log_probs(list(texts.values()))))
    X_c3 = sparse.hstack([features(rows, cues, 1 << 18, 3, True, WINDOW).tocsc(),
                          sparse.csc_matrix(member_block(rows, member_lp))]).tocsr()

    candidates = {"c3 (reference)": (None, 1.0), "c3 + fine-tuned log-probs": ("logp", 1.0),
                  "c3 + fine-tuned log-probs x0.3": ("logp", 0.3), "c3 + fine-tuned logit P(angry)": ("angry", 1.0)}
    if args.only:
        candidates = {k: v for k, v in candidates.items() if k in args.only}
    results = {}
    for name, (variant, scale) in candidates.items():
        t0 = time.time()
        res = [cv_record(y, groups, nested_oof(X_c3, rows, y, groups, scores, variant, scale, C, args.seed,
                                               args.plain), C) for C in args.C]
        results[name] = {"cv": res, "best": log_best(name, res, t0)}
    # the encoders alone, on the series none of them saw (pair encoders), for reference
    p_alone = np.array([math.exp(scores[encoder_for(r["tv"], None)][r["uid"]][0]) for r in rows])
    results["pair encoder alone, P(angry)"] = {"best": {"oof_f1": best_f1(y, p_alone)[0], "oof_auc": auc(y, p_alone)}}
    write_results(results, args.out, summary=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
