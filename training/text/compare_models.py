"""Served-path comparison of text-emotion artifacts: the shipped model against candidates (issue 15).

Every model is loaded as the service loads it (``TextEmotionModel.load``: int8 ONNX, its own temperature and
truncation) and scores one text per run.  The **selection** is read on the TRAIN calibration slice alone (the
stratified 5 % slice, seed 13, that ``train_emotion`` holds out): a candidate wins only if its macro-F1 *and*
anger F1 there are both at least the first model's.  With ``--dev`` the dev sets (SMP2020 usual / virus, CPED
valid; de-duplicated against training as in the model card) are read afterwards, for the report.

With two or more models it also scores their ensemble (the mean of the calibrated log-probabilities, then the
argmax): two encoder passes per text, over the latency budget, so it is a ceiling for distilling them into one
model, not a serving option.

    OMP_NUM_THREADS=1 python -m training.text.compare_models models/text-emotion CANDIDATE_DIR [--dev] [--out F]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.text.emotion import LABELS, TextEmotionModel
from training.text.train_emotion import calib_and_smp_dev, ece, evaluate_probs, f1_of, macro_f1, served_log_probs

log = logging.getLogger("nuqi.text.compare_models")
ANGRY = LABELS.index("angry")


def calib_figures(lp: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    """Macro-F1, anger F1, ECE (15 bins) and NLL of calibrated log-probabilities on the calibration slice."""
    y = np.asarray(labels)
    pred = lp.argmax(1)
    return {"macro_f1": round(macro_f1(y, pred), 4), "anger_f1": round(f1_of(y, pred, ANGRY), 4),
            "ece": round(ece(np.exp(lp), y), 4), "nll": round(float(-lp[np.arange(len(y)), y].mean()), 4)}


def ensemble(lps: Sequence[np.ndarray]) -> np.ndarray:
    """Renormalised geometric mean of the models' probabilities (the mean of their log-probabilities)."""
    z = np.mean(lps, axis=0)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def wins(candidate: dict[str, float], reference: dict[str, float]) -> bool:
    """The selection rule: macro-F1 and anger F1 on the calibration slice both at least the reference's."""
    return candidate["macro_f1"] >= reference["macro_f1"] and candidate["anger_f1"] >= reference["anger_f1"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="artifact dirs; the first is the reference (shipped)")
    ap.add_argument("--dev", action="store_true", help="after the calibration slice, read the dev sets")
    ap.add_argument("--seed", type=int, default=13, help="seed of the calibration slice (as training)")
    ap.add_argument("--data-dir", type=Path, default=None, help="text data root (default: <data_dir>/text)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if a.data_dir is None:
        from pipelines.settings import get_settings

        a.data_dir = get_settings().data_dir / "text"
    calib, dev = calib_and_smp_dev(a.data_dir, a.seed, cped=True)
    models = {str(d): TextEmotionModel.load(d) for d in a.models}
    names = list(models)

    lp = {n: served_log_probs(m, calib.texts) for n, m in models.items()}
    if len(names) > 1:
        lp["ensemble"] = ensemble([lp[n] for n in names])
    out: dict = {"calib": {n: calib_figures(v, calib.labels) for n, v in lp.items()}, "n_calib": len(calib.texts)}
    ref = out["calib"][names[0]]
    out["wins_on_calib"] = {n: wins(out["calib"][n], ref) for n in lp if n != names[0]}
    for n, f in out["calib"].items():
        log.info("calib %s: %s", n, f)

    if a.dev:
        out["dev"] = {}
        for ev in dev.values():
            dlp = {n: served_log_probs(m, ev.texts) for n, m in models.items()}
            if len(names) > 1:
                dlp["ensemble"] = ensemble([dlp[n] for n in names])
            out["dev"][ev.name] = {n: {k: round(v, 4) if isinstance(v, float) else v
                                       for k, v in evaluate_probs(ev.name, ev, np.exp(z)).items()}
                                   for n, z in dlp.items()}
            log.info("%s: %s", ev.name, out["dev"][ev.name])
    text = json.dumps(out, ensure_ascii=False, indent=1)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
