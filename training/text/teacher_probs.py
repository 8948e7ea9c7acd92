"""A teacher's probabilities of every training text, for distilling an ensemble into one model (issue 15).

The teacher is one or more served text-emotion artifacts (``TextEmotionModel.load``: int8 ONNX, one text per run);
with several, their ensemble (the mean of the calibrated log-probabilities, as ``compare_models``).  The file
holds, per distinct training text (SMP2020 usual + virus train and NLPCC 2013, the pool ``train_emotion`` draws
its training texts and calibration slice from), a 16-hex-digit sha1 of the text and six float16 probabilities:
about 1 MB for 49k texts and no text, so it can be kept when the teacher models themselves cannot (a fine-tuned
candidate lives in a host's /tmp).  ``train_emotion --teacher FILE --distill-alpha A`` trains on it.

    OMP_NUM_THREADS=1 python -m training.text.teacher_probs models/text-emotion CANDIDATE_DIR --out teacher.npz
    # ≈ 4 min per model on one thread
    OMP_NUM_THREADS=1 python -m training.text.teacher_probs models/text-emotion --ngram-oof 5 --out teacher.npz
    # e5 + the char n-gram member scored out of fold (its in-sample probabilities are near the labels)
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.text.teacher_file import write_teacher

log = logging.getLogger("nuqi.text.teacher_probs")


def labelled_pool(root: Path):
    """The training pool with labels (``TextSet``), duplicates kept once with their first label."""
    from training.text.train_emotion import TextSet, load_nlpcc, load_smp_train

    seen: dict[str, int] = {}
    for ts in (load_smp_train(root), load_nlpcc(root)):
        for t, y in zip(ts.texts, ts.labels):
            seen.setdefault(t, y)
    return TextSet("pool", list(seen), list(seen.values()))


def ngram_out_of_fold(pool, folds: int, seed: int) -> np.ndarray:
    """Log-probabilities [n, 6] of the char n-gram member (``train_emotion.fit_tfidf``, the recipe of the served
    ensemble member) for every pool text from a member fitted on the other ``folds − 1`` folds (stratified)."""
    from sklearn.model_selection import StratifiedKFold

    from training.text.train_emotion import TextSet, fit_tfidf

    out = np.zeros((len(pool.texts), 6))
    y = np.asarray(pool.labels)
    for k, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(pool.texts, y)):
        vec, clf = fit_tfidf(TextSet("fold", [pool.texts[i] for i in tr], y[tr].tolist()), seed)
        out[te] = np.log(np.clip(clf.predict_proba(vec.transform([pool.texts[i] for i in te])), 1e-12, 1))
        log.info("n-gram fold %d/%d: %d texts scored out of fold", k + 1, folds, len(te))
    return out


def choose_ngram_weight(z_e5: np.ndarray, lp_ngram: np.ndarray, labels: Sequence[int]) -> tuple[float, float]:
    """The ensemble's n-gram weight (macro-F1) and temperature (NLL) on the given (calibration-slice) rows, over
    ``train_emotion``'s grid."""
    from training.text.train_emotion import NGRAM_WEIGHTS, fit_temperature, macro_f1

    by_weight = {w: macro_f1(labels, (z_e5 + w * lp_ngram).argmax(1)) for w in NGRAM_WEIGHTS}
    weight = max(by_weight, key=by_weight.get)
    return weight, fit_temperature(z_e5 + weight * lp_ngram, labels)


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.settings import get_settings
    from pipelines.text.emotion import TextEmotionModel
    from training.text.compare_models import ensemble
    from training.text.train_emotion import served_log_probs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="teacher artifact dirs (several: their ensemble)")
    ap.add_argument("--out", type=Path, required=True, help="the teacher file (.npz)")
    ap.add_argument("--data-dir", type=Path, default=None, help="text data root (default: <data_dir>/text)")
    ap.add_argument("--ngram-oof", type=int, default=0, metavar="K",
                    help="add the char n-gram member, scored K-fold out of fold on the pool; its weight and the "
                         "temperature are chosen on the calibration slice")
    ap.add_argument("--seed", type=int, default=13, help="seed of the calibration slice and the folds")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    root = a.data_dir or get_settings().data_dir / "text"
    pool = labelled_pool(root)
    texts = pool.texts
    lps = []
    for d in a.models:
        lps.append(served_log_probs(TextEmotionModel.load(d), texts))
        log.info("%s: %d texts scored", d, len(texts))
    z = z_e5 = ensemble(lps)
    about = {"models": [str(d) for d in a.models], "n": len(texts),
             "how": "mean of the served models' calibrated log-probabilities"}
    if a.ngram_oof:
        from training.text.compare_models import calib_figures
        from training.text.train_emotion import calib_and_smp_dev

        lp_ng = ngram_out_of_fold(pool, a.ngram_oof, a.seed)
        calib, _ = calib_and_smp_dev(root, a.seed)
        row = {t: i for i, t in enumerate(texts)}
        rows = np.asarray([row[t] for t in calib.texts])
        weight, temperature = choose_ngram_weight(z[rows], lp_ng[rows], calib.labels)
        z = z + weight * lp_ng
        z = z / temperature
        z = z - np.log(np.exp(z).sum(1, keepdims=True))
        about.update(ngram_oof_folds=a.ngram_oof, ngram_weight=weight, temperature=temperature,
                     how=about["how"] + " + weight · the n-gram member's out-of-fold log-probabilities, / temperature",
                     calib={"e5": calib_figures(z_e5[rows], calib.labels),
                            "teacher": calib_figures(z[rows], calib.labels)})
        log.info("teacher on the calibration slice: %s", about["calib"])
    write_teacher(np.exp(z), texts, a.out, about)
    log.info("wrote %s (%.2f MB)", a.out, a.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
