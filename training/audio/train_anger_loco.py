"""Train the shipped acoustic anger model (``models/acoustic-anger/model.json``) and calibrate it on
leave-one-corpus-out predictions.  Supersedes ``pipelines/audio/train_anger.py`` (EmoDB + Taiwan only).

1. Rows (:mod:`training.audio.anger_fit`) from the feature cache of every emotion corpus except the Taiwan
   set (kept for evaluation only), telephone condition, plus any ``--train-extra`` renderings.
2. For each corpus: fit on the others, take the raw logits of the held-out corpus' cold and relative rows.
3. Platt calibration of each network on those out-of-fold logits, weighted so every corpus counts the same and,
   inside a corpus, angry = non-angry (so the calibrated logit is the log-odds at equal prevalence), then a
   ``prior_shift`` to the deployment prevalence ``--deploy-prior`` (0.12, as the earlier model: the served score is
   P(anger) for a chunk of a call in which about one chunk in eight is angry).
4. Fit on all corpora, attach the calibration, write the model.

    OMP_NUM_THREADS=1 nice python -m training.audio.train_anger_loco --train-extra /tmp/nuqi-anger-s1:tel8k
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.settings import get_settings
from training.audio import anger_fit, corpora
from training.audio.loco import load_recs

logger = logging.getLogger("nuqi.training.train_anger_loco")
# chosen on the LOCO figures (bench/RESULTS_anger_loco.md)
DEFAULT_FIT = {"kind": "mlp", "hidden": 32, "alpha": 3.0, "rel_kind": "logreg", "stack": True, "rel_deltas_only": True,
               "blend": 0.3}


def _raw(model: AcousticAngerModel, which: str, x: np.ndarray) -> np.ndarray:
    m = getattr(model, which)
    return m.raw_logit(m.z(x))


def _model_inputs(model: AcousticAngerModel, which: str, x_rel_full: np.ndarray | None, x_cold_full: np.ndarray):
    """Inputs of network ``which`` for rows given as full COLD / REL matrices."""
    m = getattr(model, which)
    if which == "absolute":
        return x_cold_full[:, [anger_fit.COLD.index(n) for n in m.features]]
    names = m.features[:-1] if m.stack else m.features
    x = x_rel_full[:, [anger_fit.REL.index(n) for n in names]]
    if m.stack:
        a = model.stack_base
        xc = x_rel_full[:, [anger_fit.REL.index(n) for n in a.features]]
        x = np.column_stack([x, a.raw_logit(a.z(xc))])
    return x


def _balanced(y: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    w = np.zeros(y.size)
    cs = np.unique(corpus)
    for c in cs:
        for lab in (0, 1):
            m = (corpus == c) & (y == lab)
            if m.any():
                w[m] = 1.0 / (2 * len(cs) * m.sum())
    return w


def platt(logit: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(logit[:, None], y, sample_weight=w / w.mean())
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def ece(p: np.ndarray, y: np.ndarray, w: np.ndarray, bins: int = 10) -> float:
    """Weighted expected calibration error over equal-width probability bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    tot = w.sum()
    e = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            e += w[m].sum() / tot * abs(np.average(y[m], weights=w[m]) - np.average(p[m], weights=w[m]))
    return float(e)


def fold_spec(fold: AcousticAngerModel, full: dict, corpus: str) -> dict:
    """A fold's cue networks as a model spec with the full model's calibration and deploy prior (what a corpus the
    served model never heard would meet), its training record naming the corpus left out."""
    spec = copy.deepcopy(fold.spec)
    for which in ("absolute", "relative"):
        for k in ("calib", "prior_shift"):
            spec["models"][which][k] = full["models"][which][k]
    spec["training"] = {**full.get("training", {}), "fold_without": corpus}
    AcousticAngerModel(spec)  # validates
    return spec


def save_folds(folds: dict[str, AcousticAngerModel], full: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for corpus, m in folds.items():
        (out / f"{corpus}.json").write_text(json.dumps(fold_spec(m, full, corpus), ensure_ascii=False,
                                                       separators=(",", ":")) + "\n", encoding="utf-8")
    logger.info("wrote the cue networks of %d folds into %s", len(folds), out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--condition", default="tel8k")
    ap.add_argument("--train-extra", nargs="*", default=[], help="<cache dir>:<condition> renderings added to training")
    ap.add_argument("--fit", default=json.dumps(DEFAULT_FIT), help="JSON kwargs for anger_fit.fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deploy-prior", type=float, default=0.12,
                    help="anger prevalence the served probabilities assume (prior_shift from the calibration's 0.5); "
                         "0.12 as the earlier model, whose scale the fusion layer was fitted on")
    ap.add_argument("--loco-results", type=Path, nargs="*", default=[], help="loco --out JSON files to record")
    ap.add_argument("--out", type=Path, default=None, help="model path (default: models/acoustic-anger/model.json)")
    ap.add_argument("--save-folds", type=Path, default=None,
                    help="also write each fold's cue networks (trained without that corpus) as <corpus>.json here, "
                         "with the full model's calibration: out-of-sample streams (train_anger_cnn --cue-nets)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fit_kw = json.loads(a.fit)
    recs = [r for r in load_recs(a.condition) if r.corpus != corpora.TW]
    for i, spec in enumerate(a.train_extra):
        d, cond = spec.rsplit(":", 1)
        recs += [r for r in load_recs(cond, cache=Path(d), tag=f"x{i}|") if r.corpus != corpora.TW]
    oof: dict[str, list] = {"absolute": [], "relative": []}
    folds: dict[str, AcousticAngerModel] = {}
    for c in corpora.EMOTION_CORPORA:
        t0 = time.time()
        m = folds[c] = anger_fit.fit([r for r in recs if r.corpus != c], seed=a.seed, **fit_kw)
        held = [r for r in recs if r.corpus == c and not r.id.startswith("x")]
        (xc, yc, _, _), (xr, yr, _, _) = anger_fit.build_rows(held, a.seed)
        oof["absolute"].append((_raw(m, "absolute", _model_inputs(m, "absolute", None, xc)), yc, np.full(yc.size, c)))
        if xr.size:
            raw = _raw(m, "relative", _model_inputs(m, "relative", xr, xc))
            if m.blend_absolute:
                xra = xr[:, [anger_fit.REL.index(n) for n in m.absolute.features]]
                raw = (1 - m.blend_absolute) * raw + m.blend_absolute * _raw(m, "absolute", xra)
            oof["relative"].append((raw, yr, np.full(yr.size, c)))
        logger.info("%s: out-of-fold logits (%.0f s)", c, time.time() - t0)
    final = anger_fit.fit(recs, seed=a.seed, **fit_kw)
    spec = final.spec
    calib_report = {}
    for which in ("absolute", "relative"):
        lg = np.concatenate([t[0] for t in oof[which]])
        y = np.concatenate([t[1] for t in oof[which]])
        cc = np.concatenate([t[2] for t in oof[which]])
        w = _balanced(y, cc)
        ca, cb = platt(lg, y, w)
        spec["models"][which]["calib"] = [ca, cb]
        spec["models"][which]["prior_shift"] = float(np.log(a.deploy_prior / (1 - a.deploy_prior)))
        p = 1 / (1 + np.exp(-(ca * lg + cb)))
        calib_report[which] = {
            "platt": [round(ca, 4), round(cb, 4)],
            "ece_balanced_all": round(ece(p, y, w), 4),
            "ece_balanced_per_corpus": {c: round(ece(p[cc == c], y[cc == c], w[cc == c]), 4) for c in np.unique(cc)},
            "mean_p_angry": {c: round(float(p[(cc == c) & (y == 1)].mean()), 3) for c in np.unique(cc)},
            "mean_p_not_angry": {c: round(float(p[(cc == c) & (y == 0)].mean()), 3) for c in np.unique(cc)},
        }
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    spec["training"] = {
        "trainer": "python -m training.audio.train_anger_loco",
        "args": {"condition": a.condition, "train_extra": a.train_extra, "fit": fit_kw, "seed": a.seed,
                 "deploy_prior": a.deploy_prior},
        "code_commit": commit,
        "corpora": list(corpora.EMOTION_CORPORA),
        "not_trained_on": [corpora.TW, "aishell-sample-dev"],
        "rows": {"absolute": int(sum(t[1].size for t in oof["absolute"])),
                 "relative": int(sum(t[1].size for t in oof["relative"]))},
        "labels": "angry vs every other emotion; 1 s chunks with speech",
        "calibration": calib_report,
        "baseline": {"min_ready_s": anger_fit.MIN_READY_S, "baseline_seconds": anger_fit.BASELINE_SECONDS},
        "licence": "research use only (trained on research-only / CC BY-NC-SA corpora; see MODEL_CARD.md)",
    }
    res = {}
    for p in a.loco_results:
        d = json.loads(p.read_text())
        res[p.stem] = {"condition": d["condition"], "lso": d["lso"], "opening_s": d["opening_s"],
                       "average": d["average"], "per_corpus": d["per_corpus"]}
    if res:
        spec["evaluation"] = res
    if a.save_folds:
        save_folds(folds, spec, a.save_folds)
    out = a.out or get_settings().models_dir / "acoustic-anger" / "model.json"
    AcousticAngerModel(spec)  # validates
    out.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d bytes); calibration %s", out, out.stat().st_size,
                {k: (v["platt"], v["ece_balanced_all"]) for k, v in calib_report.items()})


if __name__ == "__main__":
    main()
