"""Two-stage candidates of the context-anger feature search (models/text-context/MODEL_CARD.md), TRAIN series only.

    OMP_NUM_THREADS=1 python -m training.text.context_search_gbm --ngram-lp FILE

Stage 1: a logistic regression on the hashed n-gram blocks alone (C 0.1, balanced) gives a logit, out-of-fold
inside each training fold (nested leave-one-series-out).  Stage 2: HistGradientBoosting on [dense (c2) features,
logit] and on [dense, role, lexicon, surface, n-gram member, logit], and a logistic regression on the latter.
Scored like :mod:`training.text.context_search`: pooled out-of-fold anger F1 at its best threshold.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.text.context import WINDOW
from training.fusion.cped import TUNE_TV, load_dialogues, text_cues
from training.text import context_search as cs
from training.text.train_context import auc, best_f1, features, fit


def main(argv: Sequence[str] | None = None) -> int:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(prog="python -m training.text.context_search_gbm")
    ap.add_argument("--ngram-lp", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    d = load_dialogues()
    cues = text_cues(d)
    rows = [r for r in cs.rows_with_history(d, cues) if r["tv"] in TUNE_TV]
    y = np.array([r["y"] for r in rows])
    g = np.array([r["tv"] for r in rows])
    X = features(rows, cues, 1 << 18, 3, True, WINDOW).tocsc()
    n_dense = 44  # the (c2) dense block (no member columns: features() without member_lp leaves them zero)
    Xd, Xn = X[:, :n_dense].toarray(), X[:, X.shape[1] - 3 * (1 << 18):].tocsr()
    ex = np.hstack([cs.role_block(rows, cues, None), cs.lex_block(rows, cues), cs.surf_block(rows, cues),
                    cs.member_block(rows, json.loads(args.ngram_lp.read_text()))])

    def lr_logit(tr, te):
        return fit(Xn[tr], y[tr], 0.1, "balanced", 13).decision_function(Xn[te])

    oof = {k: np.zeros(len(y)) for k in ("gbm_dense", "gbm_all", "lr_stack_all")}
    for s in np.unique(g):
        te = g == s
        idx = np.nonzero(~te)[0]
        z_tr = np.zeros(len(idx))
        for s2 in np.unique(g[idx]):
            m = g[idx] == s2
            z_tr[m] = lr_logit(idx[~m], idx[m])
        z_te = lr_logit(idx, np.nonzero(te)[0])
        for name, F in (("gbm_dense", Xd), ("gbm_all", np.hstack([Xd, ex]))):
            clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                 min_samples_leaf=40, l2_regularization=1.0,
                                                 class_weight="balanced", random_state=13)
            oof[name][te] = clf.fit(np.column_stack([F[~te], z_tr]), y[~te]).predict_proba(
                np.column_stack([F[te], z_te]))[:, 1]
        F = np.hstack([Xd, ex])
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
        oof["lr_stack_all"][te] = lr.fit(np.column_stack([F[~te], z_tr]), y[~te]).predict_proba(
            np.column_stack([F[te], z_te]))[:, 1]
    res = {k: {"oof_f1": best_f1(y, p)[0], "oof_auc": auc(y, p)} for k, p in oof.items()}
    for k, v in res.items():
        print(k, v)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
