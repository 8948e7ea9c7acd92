"""Leave-one-corpus-out benchmark of Whisper-encoder embeddings for acoustic anger (issue 13, option c).

Input: the embedding cache of :mod:`training.audio.whisper_embed` (tel8k rendering, first 3 s of every clip).  For
each held-out corpus a logistic regression (standardised features, angry vs every other clip) is trained on the other
six emotion corpora (never the Taiwan set) and scores the held-out clips, with the pairs of
:mod:`training.audio.loco`: ``ang_neu`` angry vs neutral (+ RAVDESS calm), ``ang_oth`` angry vs the other emotions,
``neg_nat`` Taiwan negative vs natural (scored by a model trained on all seven corpora).  Two modes:

* ``cold``  — the clip's embedding as it is;
* ``opened`` — the embedding minus the mean embedding of the same speaker's other calm clips (what a call's opening
  would give; speaker corpora only), and the model trained the same way (each training clip minus its speaker's
  other calm clips).

With ``--v2 <oof json>`` (the ``oof`` scores written by ``training.audio.loco --out``) the v2 acoustic model's cold
score is stacked with the embedding score (both as logits, weights fitted on the training corpora) to see whether
the two carry different information.

    OMP_NUM_THREADS=1 python -m training.audio.loco_embed --out /tmp/loco_embed.json
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from training.audio import corpora, whisper_embed
from training.audio.loco import OTHER, _auc

logger = logging.getLogger("nuqi.training.loco_embed")


def speaker_relative(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's embedding minus the mean of its speaker's *other* calm clips; mask of clips that have any."""
    emb, spk, calm = d["emb"], d["speaker"], np.isin(d["emotion"], ("neutral", "calm"))
    out, ok = np.zeros_like(emb), np.zeros(len(emb), bool)
    by: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(spk):
        if s and calm[i]:
            by[s].append(i)
    for i, s in enumerate(spk):
        idx = [j for j in by.get(s, []) if j != i] if s else []
        if idx:
            out[i], ok[i] = emb[i] - emb[idx].mean(axis=0), True
    return out, ok


def fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, c: float) -> np.ndarray:
    sc = StandardScaler().fit(x_tr)
    m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(sc.transform(x_tr), y_tr)
    return m.decision_function(sc.transform(x_te))


def pair_aucs(emotion: np.ndarray, s: np.ndarray, tw: bool) -> dict[str, float | None]:
    if tw:
        return {"neg_nat": _auc(list(s[emotion == "negative"]), list(s[emotion == "natural"]))}
    ang = list(s[emotion == "angry"])
    return {"ang_neu": _auc(ang, list(s[np.isin(emotion, ("neutral", "calm"))])),
            "ang_oth": _auc(ang, list(s[np.isin(emotion, OTHER)]))}


HI_AROUSAL = ("happy", "fear", "surprise", "disgust")


def run(c: float, v2: dict[str, dict] | None = None, neg: str = "all") -> dict:
    """``neg="hi"``: the embedding model learns angry vs the *high-arousal* other emotions only (happy, fear,
    surprise, disgust), leaving arousal to the v2 model it is stacked with."""
    d = whisper_embed.load()
    rel, has_rel = speaker_relative(d)
    y = d["emotion"] == "angry"
    usable = y | np.isin(d["emotion"], HI_AROUSAL) if neg == "hi" else np.ones(len(y), bool)
    res: dict[str, dict[str, float | None]] = {}
    for held in corpora.ALL:
        te = d["corpus"] == held
        tr = ~te & (d["corpus"] != corpora.TW) if held != corpora.TW else d["corpus"] != corpora.TW
        tr_e = tr & usable  # rows the embedding model is fitted on
        s = fit_predict(d["emb"][tr_e], y[tr_e], d["emb"][te], c)
        r = {f"{k}.cold": v for k, v in pair_aucs(d["emotion"][te], s, held == corpora.TW).items()}
        if held in corpora.SPEAKER_CORPORA:
            tr_r, te_r = tr_e & has_rel, te & has_rel
            s_r = fit_predict(rel[tr_r], y[tr_r], rel[te_r], c)
            r.update({f"{k}.opened": v for k, v in pair_aucs(d["emotion"][te_r], s_r, False).items()})
        if v2 is not None:  # stack: v2 cold logit + embedding logit, weights from the training corpora' OOF
            s_tr = np.zeros(int(tr.sum()))
            for other in sorted(set(d["corpus"][tr])):  # out-of-fold embedding scores on the training corpora
                inner_te = d["corpus"][tr] == other
                inner_tr = tr_e & (d["corpus"] != other)
                s_tr[inner_te] = fit_predict(d["emb"][inner_tr], y[inner_tr], d["emb"][tr][inner_te], c)
            v_tr = np.array([_logit(v2.get(i, {}).get("cold")) for i in d["id"][tr]])
            v_te = np.array([_logit(v2.get(i, {}).get("cold")) for i in d["id"][te]])
            ok_tr = np.isfinite(v_tr)
            st = LogisticRegression(max_iter=1000, class_weight="balanced").fit(
                np.c_[s_tr, v_tr][ok_tr], y[tr][ok_tr])
            ok_te = np.isfinite(v_te)
            s_st = np.full(len(v_te), np.nan)
            s_st[ok_te] = st.decision_function(np.c_[s[ok_te], v_te[ok_te]])
            e = d["emotion"][te][ok_te]
            r.update({f"{k}.stack_cold": v for k, v in pair_aucs(e, s_st[ok_te], held == corpora.TW).items()})
            r.update({f"{k}.v2_cold": v for k, v in pair_aucs(e, v_te[ok_te], held == corpora.TW).items()})
            r["stack_w"] = [round(float(w), 3) for w in st.coef_[0]]
        res[held] = r
        logger.info("C=%g %s: %s", c, held, {k: v if isinstance(v, list) else v and round(v, 3) for k, v in r.items()})
    keys = sorted({k for r in res.values() for k in r if k != "stack_w"})
    avg = {k: float(np.mean([r[k] for r in res.values() if r.get(k) is not None]))
           for k in keys if any(r.get(k) is not None for r in res.values())}
    return {"C": c, "neg": neg, "per_corpus": res, "average": avg}


def _logit(p: float | None) -> float:
    if p is None:
        return float("nan")
    p = min(max(float(p), 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--C", type=float, nargs="+", default=[0.001, 0.01, 0.1])
    ap.add_argument("--v2", type=Path, default=None, help="oof scores of training.audio.loco --out (JSON)")
    ap.add_argument("--neg", choices=("all", "hi"), default="all",
                    help="negatives of the embedding model: every other clip, or the high-arousal emotions only")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    v2 = json.loads(a.v2.read_text())["oof"] if a.v2 else None
    out = [run(c, v2, a.neg) for c in a.C]
    for r in out:
        print(f"C={r['C']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["average"].items()))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
