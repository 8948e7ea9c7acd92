"""Per-class decision offsets for macro-F1 (an experiment of issue 15; measured, not shipped).

Adds one offset per class to the served model's calibrated log-probabilities before the argmax, chosen by
coordinate ascent (3 rounds, grid −1.5 … 1.5 step 0.1) for macro-F1 on the TRAIN calibration slice (the same
stratified 5 % slice, seed 13, that ``train_emotion`` holds out for the temperature), then reads the SMP2020 dev
sets (de-duplicated against training, as the model card's table).  Scores come from the served int8 model, one
text per run, as in the service.

    OMP_NUM_THREADS=1 python -m training.text.decision_offsets        # ≈ 1 min
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from pipelines.text.emotion import LABELS
from training.text.train_emotion import f1_of, macro_f1, served_experiment, served_log_probs

log = logging.getLogger("nuqi.text.decision_offsets")
GRID = np.round(np.arange(-1.5, 1.51, 0.1), 2)


def fit_offsets(z: np.ndarray, y: Sequence[int], rounds: int = 3) -> np.ndarray:
    b = np.zeros(z.shape[1])
    for _ in range(rounds):
        for c in range(z.shape[1]):
            best_v, best_g = macro_f1(y, (z + b).argmax(1)), b[c]
            for g in GRID:
                trial = b.copy()
                trial[c] = g
                v = macro_f1(y, (z + trial).argmax(1))
                if v > best_v + 1e-9:
                    best_v, best_g = v, g
            b[c] = best_g
    return b


def main(argv: Sequence[str] | None = None) -> int:
    calib, dev, model = served_experiment(argv, __doc__.split("\n")[0])
    zc = served_log_probs(model, calib.texts)
    b = fit_offsets(zc, calib.labels)
    out = {"offsets": dict(zip(LABELS, b.round(2).tolist())),
           "calib_macro_f1": [round(macro_f1(calib.labels, zc.argmax(1)), 4),
                              round(macro_f1(calib.labels, (zc + b).argmax(1)), 4)]}
    for domain, ev in dev.items():
        z = served_log_probs(model, ev.texts)
        out[f"smp_{domain}_eval"] = {
            "macro_f1": [round(macro_f1(ev.labels, z.argmax(1)), 4), round(macro_f1(ev.labels, (z + b).argmax(1)), 4)],
            "anger_f1": [round(f1_of(ev.labels, z.argmax(1), 0), 4), round(f1_of(ev.labels, (z + b).argmax(1), 0), 4)]}
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
