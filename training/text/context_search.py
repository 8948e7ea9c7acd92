"""Feature search for the dialogue-context anger model, by leave-one-series-out CV on the TRAIN series only.

    OMP_NUM_THREADS=1 python -m training.text.context_search [--only NAME ...] [--out FILE]

Every candidate is the shipped (c2) design of :mod:`training.text.train_context` (dense features + hashed char
n-grams of the turn and of the two previous turns) plus optional extra dense blocks, each computable when a turn is
served from the text of the turns and their roles (never from CPED-only annotations):

* ``role``: the same speaker's earlier turns in the dialogue (any, max / mean / latest P(angry)), the other
  speakers' (max / latest P(angry)), the turn index;
* ``lex``: keyword-lexicon hits of the turn (``pipelines.text.lexicon``: score, stage, counted hits by category,
  negated hits, calming);
* ``surf``: surface cues of the turn (length, clauses, repeated characters);

and scalings of the dense block against the n-gram blocks (an L2 penalty per block).  The score of a candidate is
the pooled out-of-fold anger F1 at its best threshold over C in the grid (the selection rule of the card).
The held-out series are never read here.  Writes a JSON of every CV figure (default
``/tmp/nuqi_fusion_cache/context_search.json``).
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

from pipelines.text.context import N_DENSE, WINDOW
from training.fusion.cped import CACHE_DIR, TUNE_TV, load_dialogues, text_cues
from training.text.train_context import auc, best_f1, csr_rows, features, out_of_fold

log = logging.getLogger("nuqi.text.context_search")

LEX_CATEGORIES = ("dissatisfaction", "insults", "repetition_waiting", "external_escalation",
                  "demands", "complaint_intent")


def rows_with_history(dialogues, cues) -> list[dict]:
    """Rows as ``train_context.build_rows`` makes them, with every earlier turn of the dialogue kept too."""
    rows = []
    for utts in dialogues.values():
        for i, u in enumerate(utts):
            prev = [utts[j] for j in range(i - 1, max(-1, i - 1 - WINDOW), -1)]
            rows.append({"uid": u.uid, "tv": u.tv, "y": u.anger, "text": u.text, "speaker": u.speaker,
                         "probs": cues[u.uid]["probs"], "lexicon": cues[u.uid]["lexicon"],
                         "prev": [(p.uid, p.speaker == u.speaker) for p in prev],
                         "all_prev": [(p.uid, p.speaker == u.speaker) for p in utts[:i][::-1]], "index": i})
    return rows


def role_block(rows, cues, window: int | None) -> np.ndarray:
    """Same-speaker / other-speaker anger memory over the earlier turns (all of them, or the last ``window``)."""
    out = np.zeros((len(rows), 9))
    for n, r in enumerate(rows):
        prev = r["all_prev"] if window is None else r["all_prev"][:window]
        own = [cues[uid]["probs"]["angry"] for uid, same in prev if same]
        oth = [cues[uid]["probs"]["angry"] for uid, same in prev if not same]
        if own:
            out[n, 0:4] = (1.0, max(own), float(np.mean(own)), own[0])
        if oth:
            out[n, 4:7] = (1.0, max(oth), oth[0])
        out[n, 7] = math.log1p(r["index"]) / math.log1p(30)
        out[n, 8] = math.log1p(len(own)) / math.log1p(15)
    return out


def lex_block(rows, cues, prev: bool = True) -> np.ndarray:
    def one(lex) -> list[float]:
        hits = lex["hits"]
        counted = [h for h in hits if not h["negated"] and h["category"] != "calming"]
        v = [lex["score"], lex["stage_hint"] / 6.0, min(len(counted), 3) / 3.0,
             float(any(h["negated"] for h in hits)), float(lex["calming"])]
        v += [float(any(h["category"] == c for h in counted)) for c in LEX_CATEGORIES]
        return v

    out = []
    for r in rows:
        v = one(r["lexicon"])
        if prev:
            v += [cues[r["prev"][0][0]]["lexicon"]["score"] if r["prev"] else 0.0,
                  float(cues[r["prev"][0][0]]["lexicon"]["calming"]) if r["prev"] else 0.0]
        out.append(v)
    return np.asarray(out)


def surface(text: str) -> list[float]:
    t = " ".join(text.split())
    chars = t.replace(" ", "")
    n = len(chars)
    run, best = 1, 1
    for a, b in zip(chars, chars[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return [math.log1p(n) / math.log1p(40), min(t.count(" ") + 1, 6) / 6.0, float(best >= 2), float(best >= 3),
            (len(set(chars)) / n) if n else 0.0, float(n <= 2)]


def surf_block(rows, cues) -> np.ndarray:
    text_of = {r["uid"]: r["text"] for r in rows}
    out = []
    for r in rows:
        v = surface(r["text"])
        v += surface(text_of[r["prev"][0][0]])[:2] if r["prev"] else [0.0, 0.0]
        out.append(v)
    return np.asarray(out)


def review_block(rows, lp: dict[str, list[float]]) -> np.ndarray:
    """The review member's (:mod:`training.text.extra_member`) log-odds of a negative review, of the turn and of
    the previous turn (0 when there is none), and their product with "the previous turn is the same speaker's"."""
    out = np.zeros((len(rows), 3))
    for n, r in enumerate(rows):
        neg, pos = lp[r["uid"]]
        out[n, 0] = neg - pos
        if r["prev"]:
            uid, same = r["prev"][0]
            out[n, 1] = lp[uid][0] - lp[uid][1]
            out[n, 2] = out[n, 1] * same
    return out


def member_block(rows, lp: dict[str, list[float]]) -> np.ndarray:
    """An n-gram member's log-probabilities (any number of classes), floored like the utterance model's, of the
    turn and of the previous turn (zeros when there is none): the text-emotion member of (c3), or an extra member
    of :mod:`training.text.extra_member`."""
    floor = math.log(1e-4)
    k = len(next(iter(lp.values())))
    out = np.zeros((len(rows), 2 * k))
    for n, r in enumerate(rows):
        out[n, :k] = np.maximum(lp[r["uid"]], floor)
        if r["prev"]:
            out[n, k:] = np.maximum(lp[r["prev"][0][0]], floor)
    return out


def embed_block(rows, npz: Path, prev: bool = True) -> np.ndarray:
    """The utterance model's mean-pooled sentence vector (:mod:`training.text.cped_embed`) of the turn and, with
    ``prev``, of the previous turn (zeros when there is none), each dimension standardised over these rows."""
    with np.load(npz) as z:
        vec = dict(zip(z["uid"].tolist(), z["vec"]))
    d = next(iter(vec.values())).size
    out = np.zeros((len(rows), 2 * d if prev else d), dtype=np.float32)
    for n, r in enumerate(rows):
        out[n, :d] = vec[r["uid"]]
        if prev and r["prev"]:
            out[n, d:] = vec[r["prev"][0][0]]
    mu, sd = out.mean(axis=0), out.std(axis=0) + 1e-6
    return (out - mu) / sd


def split_prev_ngrams(rows, dim: int, n_max: int):
    """Hashed n-grams of the previous two turns in four spaces: (prev1, prev2) x (same speaker, other)."""
    from pipelines.text.context import char_ngrams

    text_of = {r["uid"]: r["text"] for r in rows}
    blocks = []
    for r in rows:
        cols, vals = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float32)]
        for k, (uid, same) in enumerate(r["prev"][:2]):
            idx, val = char_ngrams(text_of[uid], n_max, dim)
            cols.append((2 * k + (0 if same else 1)) * dim + idx)
            vals.append(val)
        blocks.append((cols, vals))
    return csr_rows(blocks, 4 * dim)


def cv_record(y: np.ndarray, groups: np.ndarray, oof: np.ndarray, C: float) -> dict:
    """The CV figures of one setting from its out-of-fold P(anger): pooled F1 at its best threshold, AUC, and
    each series' best F1."""
    f1, thr = best_f1(y, oof)
    per = {g: best_f1(y[groups == g], oof[groups == g])[0] for g in np.unique(groups)}
    return {"C": C, "oof_f1": f1, "oof_auc": auc(y, oof), "threshold": thr,
            "per_series_best_f1": {str(k): round(v, 4) for k, v in per.items()}}


def cv(X, y, groups, C_grid: Sequence[float], seed: int, weighting="balanced") -> list[dict]:
    return [cv_record(y, groups, out_of_fold(X, y, groups, C, weighting, seed), C) for C in C_grid]


def log_best(name: str, res: list[dict], t0: float) -> dict:
    """The setting with the best pooled F1 of ``res``, logged."""
    best = max(res, key=lambda r: r["oof_f1"])
    log.info("%s: CV F1 %.4f (C %s, AUC %.4f) per series %s [%.0f s]", name, best["oof_f1"], best["C"],
             best["oof_auc"], best["per_series_best_f1"], time.time() - t0)
    return best


def write_results(results: dict, out: Path, summary: bool = False) -> None:
    """``results`` as JSON into ``out``; with ``summary`` also one line per candidate on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    for name, r in results.items() if summary else ():
        C = f" (C {r['best']['C']})" if "C" in r["best"] else ""
        print(f"{name}: CV F1 {r['best']['oof_f1']:.4f} AUC {r['best']['oof_auc']:.4f}{C}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.text.context_search", description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    ap.add_argument("--C", nargs="*", type=float, default=[0.03, 0.1, 0.3])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=CACHE_DIR / "context_search.json")
    ap.add_argument("--ngram-lp", type=Path, default=None,
                    help="JSON {uid: 6 log-probabilities} of the text-emotion n-gram member on CPED (default: "
                         "computed with the member shipped in <models_dir>/text-context)")
    ap.add_argument("--review-lp", type=Path, default=None,
                    help="JSON {uid: [log P(neg), log P(pos)]} of the review member on CPED "
                         "(training.text.extra_member; optional)")
    ap.add_argument("--nlpcc-lp", type=Path, default=None,
                    help="JSON {uid: 8 log-probabilities} of the NLPCC 8-label member on CPED "
                         "(training.text.extra_member --corpus nlpcc8; optional)")
    ap.add_argument("--embed", type=Path, default=None,
                    help="npz of the utterance model's pooled vectors on CPED (training.text.cped_embed; optional)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from scipy import sparse

    dialogues = load_dialogues()
    cues = text_cues(dialogues)
    rows = [r for r in rows_with_history(dialogues, cues) if r["tv"] in TUNE_TV]  # TRAIN series only
    y = np.array([r["y"] for r in rows])
    groups = np.array([r["tv"] for r in rows])
    dim = 1 << 18
    base = {3: features(rows, cues, dim, 3, True, WINDOW).tocsc()}
    n_dense = N_DENSE  # the n-gram blocks start here (the member columns of the dense block stay zero)
    blocks = {"role": role_block(rows, cues, None), "role8": role_block(rows, cues, WINDOW),
              "lex": lex_block(rows, cues), "surf": surf_block(rows, cues)}
    if args.ngram_lp is not None:
        blocks["ngram_member"] = member_block(rows, json.loads(args.ngram_lp.read_text()))
    else:
        from pipelines.settings import get_settings
        from pipelines.text.ngram import CharNgramModel

        member = CharNgramModel.load(get_settings().models_dir / "text-context")
        texts = {r["uid"]: r["text"] for r in rows}
        blocks["ngram_member"] = member_block(rows, dict(zip(texts, member.log_probs(list(texts.values())))))
    if args.review_lp is not None:
        blocks["review"] = review_block(rows, json.loads(args.review_lp.read_text()))
    if args.nlpcc_lp is not None:
        blocks["nlpcc8"] = member_block(rows, json.loads(args.nlpcc_lp.read_text()))
    if args.embed is not None:
        blocks["embed"] = embed_block(rows, args.embed)
        blocks["embed_cur"] = embed_block(rows, args.embed, prev=False)

    def design(extra: Sequence[str] = (), dense_scale: float = 1.0, ngram_scale: float = 1.0, extra_scale=1.0,
               n_max: int = 3, split_prev: bool = False, weighting="balanced", scales: Sequence[float] = ()):
        if n_max not in base:
            base[n_max] = features(rows, cues, dim, n_max, True, WINDOW).tocsc()
        B = base[n_max]
        if split_prev:
            parts = [B[:, :n_dense] * dense_scale, B[:, n_dense:n_dense + dim] * ngram_scale,
                     split_prev_ngrams(rows, dim, n_max).tocsc() * ngram_scale]
        else:
            parts = [B[:, :n_dense] * dense_scale, B[:, n_dense:] * ngram_scale]
        parts += [sparse.csc_matrix(blocks[b] * (scales[i] if scales else extra_scale)) for i, b in enumerate(extra)]
        return sparse.hstack(parts).tocsr()

    candidates = {
        "c2 (shipped design)": {},
        "c2 + role": {"extra": ["role"]},
        "c2 + role (window 8)": {"extra": ["role8"]},
        "c2 + lex": {"extra": ["lex"]},
        "c2 + surf": {"extra": ["surf"]},
        "c2 + role + lex + surf": {"extra": ["role", "lex", "surf"]},
        "c2, dense x3": {"dense_scale": 3.0},
        "c2 + role + lex + surf, dense x3": {"extra": ["role", "lex", "surf"], "dense_scale": 3.0, "extra_scale": 3.0},
        "c2, n-grams x0.5": {"ngram_scale": 0.5},
        "c2, 1-4-grams": {"n_max": 4},
        "c2, previous turns' n-grams split by same / other speaker": {"split_prev": True},
        "c2, class weight 1:3": {"weighting": {0: 1.0, 1: 3.0}},
        "c2, class weight 1:15": {"weighting": {0: 1.0, 1: 15.0}},
        "c2 + n-gram member": {"extra": ["ngram_member"]},
        "c2 + n-gram member, dense x3": {"extra": ["ngram_member"], "dense_scale": 3.0, "extra_scale": 3.0},
        "c3 + review member": {"extra": ["ngram_member", "review"]},
        "c3 + review member x0.3": {"extra": ["ngram_member", "review"], "scales": [1.0, 0.3]},
        "c3 + review member x3": {"extra": ["ngram_member", "review"], "scales": [1.0, 3.0]},
        "c3 + NLPCC 8-label member": {"extra": ["ngram_member", "nlpcc8"]},
        "c3 + NLPCC 8-label member x0.3": {"extra": ["ngram_member", "nlpcc8"], "scales": [1.0, 0.3]},
        "c3 + pooled vector of the turn, x0.1": {"extra": ["ngram_member", "embed_cur"], "scales": [1.0, 0.1]},
        "c3 + pooled vector of the turn, x0.3": {"extra": ["ngram_member", "embed_cur"], "scales": [1.0, 0.3]},
        "c3 + pooled vectors of the turn and the previous one, x0.1": {"extra": ["ngram_member", "embed"],
                                                                       "scales": [1.0, 0.1]},
        "c3 + pooled vectors of the turn and the previous one, x0.3": {"extra": ["ngram_member", "embed"],
                                                                       "scales": [1.0, 0.3]},
        "c3 + pooled vectors of the turn and the previous one, x1": {"extra": ["ngram_member", "embed"],
                                                                     "scales": [1.0, 1.0]},
    }
    if args.only:
        candidates = {k: v for k, v in candidates.items() if k in args.only}
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name, spec in candidates.items():
        t0 = time.time()
        if any(b not in blocks for b in spec.get("extra", [])):
            log.info("%s: skipped (block missing)", name)
            continue
        X = design(**{k: v for k, v in spec.items() if k != "weighting"})
        res = cv(X, y, groups, args.C, args.seed, spec.get("weighting", "balanced"))
        results[name] = {"spec": {k: (str(v) if k == "weighting" else v) for k, v in spec.items()}, "cv": res,
                         "best": log_best(name, res, t0)}
        write_results(results, args.out)
    write_results(results, args.out, summary=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
