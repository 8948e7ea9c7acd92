"""Train, select and evaluate the dialogue-context anger model (``models/text-context/``).

    OMP_NUM_THREADS=1 python -m training.text.train_context            # ≈ 2 min once the CPED cues are cached

Data: CPED valid (``text/cped-valid/valid_split.csv``), split by whole TV series as in ``training/fusion/cped.py``:
TRAIN = series 32/39/40 (the fusion's tune split), HELD OUT = 44/45 (its report split).  Target: the utterance's
``Emotion == "anger"``.  Features: :mod:`pipelines.text.context` (the shipped utterance model's probabilities of the
turn and of the two turns before it, speaker flags, hashed char n-grams of the turn and of each previous turn).

Selection, on TRAIN only: leave-one-series-out cross-validation (3 folds) over the L2 strength ``C`` and class
weighting, by pooled out-of-fold anger F1 at its best threshold; the threshold is that F1-optimal one.  Then the
chosen setting is refitted on all of TRAIN and scored once on HELD OUT, beside (a) the shipped utterance model
(argmax = angry, and its P(angry) with a threshold chosen the same way on TRAIN) and (b) the same stacker without
context.  Writes ``weights.npz``, ``config.json``, ``dev_results.json`` into the artifact and ``--cues-out`` (text cues
for ``training.fusion.eval_cped --cues``: out-of-fold probabilities on TRAIN, the final model's on HELD OUT).
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
from pipelines.text.context import (
    CONTEXT_TURNS,
    LABELS,
    LOGP_FLOOR,
    N_DENSE,
    WINDOW,
    ContextEmotionModel,
    char_ngrams,
    dense_features,
    log_probs,
    with_anger,
)
from pipelines.text.ngram import CharNgramModel
from training.fusion.cped import CACHE_DIR, REPORT_TV, TUNE_TV, load_dialogues, text_cues

log = logging.getLogger("nuqi.text.train_context")

C_GRID = (0.03, 0.1, 0.3)  # a first run over 0.03..3 x {none, balanced} chose 0.1 balanced for (b) and (c)
WEIGHTINGS = ("balanced",)


def build_rows(dialogues, cues) -> list[dict]:
    rows = []
    for utts in dialogues.values():
        for i, u in enumerate(utts):
            prev = [utts[j] for j in range(i - 1, max(-1, i - 1 - WINDOW), -1)]  # newest first
            rows.append({"uid": u.uid, "tv": u.tv, "y": u.anger, "text": u.text, "speaker": u.speaker,
                         "probs": cues[u.uid]["probs"], "prev": [(p.uid, p.speaker == u.speaker) for p in prev]})
    return rows


def fit_member(out: Path, seed: int) -> CharNgramModel:
    """The text-emotion n-gram member (char 1-3-gram TF-IDF + LR, row (a) of models/text-emotion's card), fitted
    exactly as ``train_emotion`` fits it (SMP2020 + NLPCC 2013 train, minus its calibration slice) into ``out``;
    returned as served (float16 weights)."""
    from training.text import train_emotion as te
    from training.text.ngram_fit import from_sklearn

    root = get_settings().data_dir / "text"
    parts = [te.load_smp_train(root), te.load_nlpcc(root)]
    full = te.TextSet("all_train", [t for q in parts for t in q.texts], [y for q in parts for y in q.labels])
    train_set, _ = te.split_calibration(full, te.build_argparser().parse_args([]).calib_frac, seed)
    out.mkdir(parents=True, exist_ok=True)
    from_sklearn(*te.fit_tfidf(train_set, seed)).save(out)
    return CharNgramModel.load(out)


def features(rows: list[dict], cues, dim: int, n_max: int, context: bool, window: int = CONTEXT_TURNS,
             member_lp: dict[str, np.ndarray] | None = None):
    """Sparse design matrix: [dense | current n-grams | previous-turn n-grams | the one before].  ``member_lp``:
    the n-gram member's floored log-probabilities by utterance id (None: no member features)."""

    ng_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    text_of = {r["uid"]: r["text"] for r in rows}

    def ng(uid: str):
        if uid not in ng_cache:
            ng_cache[uid] = char_ngrams(text_of[uid], n_max, dim)
        return ng_cache[uid]

    blocks = []
    for r in rows:
        prev = [(log_probs(cues[uid]["probs"]), same) for uid, same in r["prev"]] if context else []
        member = None
        if member_lp is not None:
            member = (member_lp[r["uid"]], member_lp[r["prev"][0][0]] if context and r["prev"] else None)
        x = dense_features(log_probs(r["probs"]), prev, window, member)
        nz = np.nonzero(x)[0]
        cols, vals = [nz], [x[nz]]
        idx, val = ng(r["uid"])
        cols.append(N_DENSE + idx)
        vals.append(val)
        if context:
            for k, (uid, _) in enumerate(r["prev"][:CONTEXT_TURNS]):
                idx, val = ng(uid)
                cols.append(N_DENSE + (k + 1) * dim + idx)
                vals.append(val)
        blocks.append((cols, vals))
    return csr_rows(blocks, N_DENSE + (1 + CONTEXT_TURNS) * dim)


def csr_rows(blocks, n_cols: int):
    """A CSR matrix from one (column-index arrays, value arrays) pair of lists per row (columns sorted per row)."""
    from scipy import sparse

    data, ind, ptr = [], [], [0]
    for cols, vals in blocks:
        c = np.concatenate(cols)
        order = np.argsort(c, kind="stable")
        ind.append(c[order])
        data.append(np.concatenate(vals)[order])
        ptr.append(ptr[-1] + len(c))
    return sparse.csr_matrix((np.concatenate(data), np.concatenate(ind), np.asarray(ptr)), shape=(len(blocks), n_cols))


def best_f1(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(F1, threshold) maximising F1 over the distinct scores."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1 = 2 * tp / (k + ys.sum())
    last = np.r_[ps[1:] != ps[:-1], True]  # only cut between distinct scores
    f1 = np.where(last, f1, -1)
    i = int(np.argmax(f1))
    return float(f1[i]), float(ps[i])


def prf(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = int(np.sum((pred == 1) & (y == 1)))
    p = tp / max(1, int(pred.sum()))
    r = tp / max(1, int(y.sum()))
    return {"anger_f1": 0.0 if tp == 0 else 2 * p * r / (p + r), "anger_p": p, "anger_r": r, "n": int(len(y)),
            "n_anger": int(y.sum())}


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(p)
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_f1(groups: np.ndarray, y: np.ndarray, preds: dict[str, np.ndarray], n: int = 1000, seed: int = 0
                 ) -> dict[str, dict[str, float]]:
    """95 % intervals of anger F1 (and of each method's F1 minus the first one's) resampling whole dialogues."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    members = {g: np.nonzero(groups == g)[0] for g in ids}
    names = list(preds)
    draws = {k: [] for k in names}
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.choice(ids, size=len(ids))])
        for k in names:
            draws[k].append(prf(y[idx], preds[k][idx])["anger_f1"])
    out = {}
    for k in names:
        d = np.asarray(draws[k])
        diff = d - np.asarray(draws[names[0]])
        out[k] = {"f1_lo": float(np.percentile(d, 2.5)), "f1_hi": float(np.percentile(d, 97.5)),
                  f"minus_{names[0].split()[0]}_lo": float(np.percentile(diff, 2.5)),
                  f"minus_{names[0].split()[0]}_hi": float(np.percentile(diff, 97.5))}
    return out


def fit(X, y, C: float, weighting, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight=weighting, max_iter=3000, random_state=seed).fit(X, y)


def out_of_fold(X, y, groups: np.ndarray, C: float, weighting, seed: int) -> np.ndarray:
    """P(anger) of every row from a model fitted on the other series (leave-one-series-out)."""
    oof = np.zeros(len(y))
    for g in np.unique(groups):
        te = groups == g
        oof[te] = fit(X[~te], y[~te], C, weighting, seed).predict_proba(X[te])[:, 1]
    return oof


def select(X, y, groups: np.ndarray, seed: int) -> tuple[dict, np.ndarray, list[dict]]:
    """Leave-one-series-out CV over C_GRID x WEIGHTINGS; returns the best setting, its OOF probabilities, all."""
    tried, best = [], None
    for weighting in WEIGHTINGS:
        for C in C_GRID:
            oof = out_of_fold(X, y, groups, C, weighting, seed)
            f1, thr = best_f1(y, oof)
            ll = float(-np.mean(y * np.log(oof + 1e-12) + (1 - y) * np.log(1 - oof + 1e-12)))
            row = {"C": C, "class_weight": weighting, "oof_f1": f1, "oof_threshold": thr, "oof_auc": auc(y, oof),
                   "oof_logloss": ll}
            tried.append(row)
            log.info("CV %s", row)
            if best is None or f1 > best[0]["oof_f1"] + 1e-9:
                best = (row, oof)
    return best[0], best[1], tried


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def platt(p_oof: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of sigmoid(a · logit(p) + b) fitted by NLL on out-of-fold probabilities (the class weighting
    that the F1 selection prefers inflates the stacker's probabilities; this maps them back to rates)."""
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p_oof)[:, None], y)
    return float(m.coef_[0, 0]), float(m.intercept_[0])


def calib_stats(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * np.mean(bins == b) for b in range(10) if (bins == b).any())
    return {"brier": float(np.mean((p - y) ** 2)), "ece_10bins": float(ece), "mean_p": float(p.mean()),
            "rate": float(y.mean())}


def save_model(out: Path, clf, dim: int, n_max: int, threshold: float, meta: dict, member: bool) -> None:
    w = clf.coef_[0].astype(np.float64)
    arrays = {"intercept": np.float64(clf.intercept_[0]), "w_dense": w[:N_DENSE]}
    for k, name in enumerate(("cur", "prev1", "prev2")):
        block = w[N_DENSE + k * dim: N_DENSE + (k + 1) * dim]
        nz = np.nonzero(block)[0]
        arrays[f"{name}_idx"] = nz.astype(np.int32)
        arrays[f"{name}_val"] = block[nz].astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "weights.npz", **arrays)
    cfg = {"kind": "logistic-regression stacker, dialogue context (pipelines/text/context.py)",
           "hash_dim": dim, "ngram_max": n_max, "context_turns": CONTEXT_TURNS, "threshold": threshold,
           "ngram_member": member,
           "utterance_model": "models/text-emotion (calibrated probabilities)", **meta}
    (out / "config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


def serving_check(model_dir: Path, rows: list[dict], cues, dialogues, expected: dict[str, float]) -> float:
    """Score HELD OUT through the serving class, turn by turn with per-call memories; max |p - sklearn p|."""
    model = ContextEmotionModel.load(model_dir)
    diff = 0.0
    for utts in dialogues.values():
        if utts[0].tv not in REPORT_TV:
            continue
        history: list[dict] = []
        for u in utts:
            res = model.score(u.speaker, u.text, cues[u.uid]["probs"], history)
            history.append(res.memory)
            diff = max(diff, abs(res.anger - expected[u.uid]))
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.text.train_context", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="artifact dir (default: <models_dir>/text-context)")
    ap.add_argument("--hash-dim", type=int, default=1 << 18)
    ap.add_argument("--ngram-max", type=int, default=3)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--cues-out", type=Path, default=CACHE_DIR / "cped_context_cues.json",
                    help="where to write the context-mode text cues for training.fusion.eval_cped --cues "
                         "(derived from the dataset: kept out of the artifact)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.time()
    out = args.out or get_settings().models_dir / "text-context"
    dialogues = load_dialogues()
    cues = text_cues(dialogues)  # the shipped utterance model's probabilities (cached)
    rows = build_rows(dialogues, cues)
    t_member = time.time()
    member = fit_member(out, args.seed)
    member_lp = {r["uid"]: np.maximum(lp, LOGP_FLOOR) for r, lp in zip(rows, member.log_probs([r["text"] for r in rows]))}
    log.info("n-gram member: %d features, fitted in %.1f min", member.n_features, (time.time() - t_member) / 60)
    tr = np.array([r["tv"] in TUNE_TV for r in rows])
    te = np.array([r["tv"] in REPORT_TV for r in rows])
    y = np.array([r["y"] for r in rows])
    groups = np.array([r["tv"] for r in rows])
    log.info("CPED: %d utterances; train series %s: %d (%d anger), held-out series %s: %d (%d anger)", len(rows),
             "/".join(TUNE_TV), tr.sum(), y[tr].sum(), "/".join(REPORT_TV), te.sum(), y[te].sum())

    results: dict[str, dict] = {}
    # (a) the shipped utterance model
    pa = np.array([r["probs"]["angry"] for r in rows])
    arg = np.array([max(r["probs"], key=r["probs"].get) == "angry" for r in rows]).astype(int)
    results["(a) shipped utterance model, argmax = angry"] = {**prf(y[te], arg[te]), "auc": auc(y[te], pa[te])}
    f1_a, thr_a = best_f1(y[tr], pa[tr])
    results["(a) shipped utterance model, P(angry) >= threshold chosen on TRAIN"] = {
        **prf(y[te], (pa[te] >= thr_a).astype(int)), "auc": auc(y[te], pa[te]), "threshold": thr_a,
        "train_f1": f1_a}

    chosen = {}
    # (b): the single-utterance stacker with the n-gram member; (c2): the previous shipped design (no member);
    # (c3): (c2) + the n-gram member's log-probabilities of the turn and of the previous turn
    modes = (("(b) stacker, single utterance (+ n-gram member)", False, 0, True),
             (f"(c2) stacker, with context (previous 2 turns + summary of the last {WINDOW})", True, WINDOW, False),
             ("(c3) stacker, with context (c2) + n-gram member", True, WINDOW, True))
    for mode, context, window, use_member in modes:
        X = features(rows, cues, args.hash_dim, args.ngram_max, context, max(window, CONTEXT_TURNS),
                     member_lp if use_member else None)
        best, oof, tried = select(X[tr], y[tr], groups[tr], args.seed)
        clf = fit(X[tr], y[tr], best["C"], best["class_weight"], args.seed)
        p_te = clf.predict_proba(X[te])[:, 1]
        results[mode] = {**prf(y[te], (p_te >= best["oof_threshold"]).astype(int)), "auc": auc(y[te], p_te),
                         "threshold": best["oof_threshold"], "selected": best, "cv": tried}
        log.info("%s: held-out %s", mode, {k: v for k, v in results[mode].items() if k != "cv"})
        chosen[mode] = (clf, best, oof, p_te, window, use_member)

    # the shipped context model: the context variant with the better cross-validated F1 on TRAIN
    ship = max(modes[1:], key=lambda m: chosen[m[0]][1]["oof_f1"])[0]
    clf, best, oof_raw, p_te_raw, window, use_member = chosen[ship]
    log.info("shipping %s (CV F1 on the train series %.4f)", ship, best["oof_f1"])
    cal_a, cal_b = platt(oof_raw, y[tr])
    oof = 1 / (1 + np.exp(-(cal_a * logit(oof_raw) + cal_b)))
    p_te = 1 / (1 + np.exp(-(cal_a * logit(p_te_raw) + cal_b)))
    threshold = float(1 / (1 + np.exp(-(cal_a * logit(np.array(best["oof_threshold"])) + cal_b))))
    results[ship]["calibration"] = {"platt_a": cal_a, "platt_b": cal_b, "threshold_calibrated": threshold,
                                    "held_out_before": calib_stats(y[te], p_te_raw),
                                    "held_out_after": calib_stats(y[te], p_te),
                                    "train_oof_after": calib_stats(y[tr], oof)}
    log.info("calibration %s", results[ship]["calibration"])
    meta = {"data": "CPED valid_split.csv; train series " + "/".join(TUNE_TV) + ", held out " + "/".join(REPORT_TV),
            "variant": ship, "window": max(window, CONTEXT_TURNS), "selected": best, "seed": args.seed, "n_train": int(tr.sum()),
            "command": "OMP_NUM_THREADS=1 python -m training.text.train_context " + " ".join(argv or sys.argv[1:])}
    meta["calibration"] = {"a": cal_a, "b": cal_b, "fitted_on": "out-of-fold probabilities of the train series"}
    if not use_member:
        for f in (out / "ngram_vocab.json", out / "ngram_weights.npz"):
            f.unlink(missing_ok=True)
    save_model(out, clf, args.hash_dim, args.ngram_max, threshold, meta, use_member)
    results[ship]["shipped"] = True
    uid_te = [r["uid"] for r, m in zip(rows, te) if m]
    diff = serving_check(out, rows, cues, dialogues, dict(zip(uid_te, p_te)))
    log.info("serving path vs sklearn on held-out series: max |dp| %.2e", diff)

    # text cues for eval_cped: utterance probabilities re-weighted so that angry = context anger
    # (TRAIN: out-of-fold, HELD OUT: the final model), lexicon as before
    ctx = {**{r["uid"]: float(p) for r, p in zip([r for r, m in zip(rows, tr) if m], oof)},
           **dict(zip(uid_te, map(float, p_te)))}
    ctx_cues = {}
    for r in rows:
        c = dict(cues[r["uid"]])
        if r["uid"] in ctx and r["prev"]:  # context mode only where a previous turn exists, as served
            c["probs"] = with_anger(r["probs"], ctx[r["uid"]])
            c["text_calibrated"] = True  # the fusion takes the context anger as its calibrated text probability
        ctx_cues[r["uid"]] = c
    args.cues_out.parent.mkdir(parents=True, exist_ok=True)
    args.cues_out.write_text(json.dumps(ctx_cues, ensure_ascii=False), encoding="utf-8")
    log.info("text cues for eval_cped --cues: %s", args.cues_out)
    # the same for (b), the single-utterance stacker (Platt-calibrated the same way), on every turn: the
    # escalation comparison's middle row
    b_name = modes[0][0]
    _, _, oof_b, p_te_b, _, _ = chosen[b_name]
    a_b, b_b = platt(oof_b, y[tr])
    p_b = {**{r["uid"]: float(p) for r, p in zip([r for r, m in zip(rows, tr) if m], oof_b)},
           **dict(zip(uid_te, map(float, p_te_b)))}
    b_cues = {}
    for r in rows:
        c = dict(cues[r["uid"]])
        if r["uid"] in p_b:
            c["probs"] = with_anger(r["probs"], float(1 / (1 + np.exp(-(a_b * logit(np.array(p_b[r["uid"]])) + b_b)))))
            c["text_calibrated"] = True
        b_cues[r["uid"]] = c
    b_path = args.cues_out.with_name(args.cues_out.stem + "_single_utterance_stacker.json")
    b_path.write_text(json.dumps(b_cues, ensure_ascii=False), encoding="utf-8")
    log.info("single-utterance stacker cues for eval_cped --cues: %s", b_path)

    # as served: first turns of a dialogue stay in utterance mode
    first = np.array([not r["prev"] for r in rows])
    p_served = np.where(first[te], pa[te], p_te)
    results[f"{ship.split()[0]} as served: context where an earlier turn exists, else the utterance model"] = {
        **prf(y[te], np.where(first[te], arg[te], (p_te >= threshold).astype(int))),
        "auc": auc(y[te], p_served)}
    # dialogue-resampled 95 % intervals on HELD OUT, every method at its TRAIN-chosen threshold
    dia = np.array([r["uid"].rsplit("_", 1)[0] for r in rows])[te]
    preds = {"(a) argmax": arg[te], "(a) threshold": (pa[te] >= thr_a).astype(int)}
    for m, *_ in modes:
        preds[m] = (chosen[m][3] >= chosen[m][1]["oof_threshold"]).astype(int)
    boot = bootstrap_f1(dia, y[te], preds)
    for k, v in boot.items():
        log.info("bootstrap %s: %s", k, {a: round(b, 3) for a, b in v.items()})
    dev = {"data": meta["data"], "bootstrap_95": boot, "results": results, "serving_max_abs_diff": diff,
           "minutes": (time.time() - t0) / 60, "labels": list(LABELS), "command": meta["command"]}
    (out / "dev_results.json").write_text(json.dumps(dev, ensure_ascii=False, indent=2), encoding="utf-8")
    for k, v in results.items():
        print(f"{k}: F1 {v['anger_f1']:.3f} (P {v['anger_p']:.3f} / R {v['anger_r']:.3f}) AUC {v['auc']:.3f}")
    log.info("wrote %s in %.1f min", out, (time.time() - t0) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
