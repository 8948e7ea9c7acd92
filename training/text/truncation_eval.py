"""Inference-time truncation of the shipped text-emotion model (an experiment of issue 15; measured first).

The model was fine-tuned with ``max_len`` 64 (head kept).  Weibo posts are longer than call-centre turns
(10.8 % of training texts are cut), and the tail of a post often carries its emotion.  This scores the served
int8 graph (one sequence per run, as the service) with head + tail truncation
(the first ``h`` tokens, counting ``<s>`` and the prefix, and the last ``max_len - h``, counting ``</s>``) on the TRAIN
calibration slice (the stratified 5 % slice, seed 13, that ``train_emotion`` holds out), picks the best by
macro-F1 there, and only then reads the SMP2020 dev sets (de-duplicated against training, as the model card).
Every variant keeps 64 tokens (the exported graph's position ids stop there; a longer input needs a re-export
with position embeddings the fine-tune never trained).  Result and decision: the model card.

    OMP_NUM_THREADS=1 python -m training.text.truncation_eval        # ≈ 3 min
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from pipelines.text.emotion import TextEmotionModel, truncate
from training.text.train_emotion import f1_of, macro_f1, served_experiment

log = logging.getLogger("nuqi.text.truncation_eval")
# name -> (max_len, head tokens kept incl. <s> and the prefix; None = head only)
VARIANTS = {"head64 (before 2026-12-06)": (64, None), "head+tail 64 (32+32)": (64, 32), "head+tail 64 (16+48)": (64, 16),
            "head+tail 64 (48+16)": (64, 48)}


def predictions(model: TextEmotionModel, texts: Sequence[str]) -> dict[str, np.ndarray]:
    full = [e.ids for e in model._tok.encode_batch([model._prefix + " ".join(t.split()) for t in texts])]
    out = {}
    for name, (max_len, head) in VARIANTS.items():
        out[name] = model._run([truncate(s, max_len, head) for s in full]).argmax(1)
        log.info("%s: %d texts", name, len(texts))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    calib, dev, model = served_experiment(argv, __doc__.split("\n")[0])
    pc = predictions(model, calib.texts)
    res = {"calib": {k: {"macro_f1": round(macro_f1(calib.labels, p), 4), "anger_f1": round(f1_of(calib.labels, p, 0), 4)}
                     for k, p in pc.items()}}
    best = max(res["calib"], key=lambda k: res["calib"][k]["macro_f1"])
    res["chosen_on_calib"] = best
    for domain, ev in dev.items():
        pe = predictions(model, ev.texts)
        res[f"smp_{domain}_eval"] = {k: {"macro_f1": round(macro_f1(ev.labels, p), 4),
                                         "anger_f1": round(f1_of(ev.labels, p, 0), 4)} for k, p in pe.items()}
    print(json.dumps(res, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
