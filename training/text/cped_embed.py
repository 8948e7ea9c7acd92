"""Pooled sentence vectors of the shipped text-emotion model for every CPED utterance (context search input).

The served int8 graph (``models/text-emotion/model.onnx``) mean-pools the encoder's last layer into a 384-dim vector
(``/Div_output_0``) before its linear head; this script exposes that tensor as a second graph output (an in-memory
copy: the shipped file is not touched, the logits are unchanged) and runs every CPED valid utterance through it,
one sequence per run as the service does.  Output: ``.npz`` with ``uid`` and ``vec`` (float32, [n, 384]).

    OMP_NUM_THREADS=1 python -m training.text.cped_embed --out /tmp/nuqi_fusion_cache/cped_pooled.npz
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.settings import get_settings
from training.fusion.cped import CACHE_DIR, load_dialogues

log = logging.getLogger("nuqi.text.cped_embed")
POOLED = "/Div_output_0"


def pooled_model(model_dir: Path):
    """The served text-emotion model with the mean-pooled vector as a second output (``pooled``)."""
    import onnx
    import onnxruntime as ort

    from pipelines.text.emotion import TextEmotionModel

    m = onnx.load(str(model_dir / "model.onnx"))
    if not any(POOLED in n.output for n in m.graph.node):
        raise SystemExit(f"{model_dir}/model.onnx has no {POOLED} tensor (graph layout changed?)")
    m.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, [None, 384]))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    tm = TextEmotionModel.load(model_dir)
    return tm, sess


def embed(tm, sess, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(pooled [n, 384], logits [n, 6]) of ``texts`` through the served int8 graph."""
    seqs, _ = tm._encode(texts)
    vec = np.zeros((len(seqs), 384), dtype=np.float32)
    lg = np.zeros((len(seqs), 6), dtype=np.float32)
    for i, s in enumerate(seqs):
        ids = np.asarray([s], dtype=np.int64)
        lg[i], vec[i] = (o[0] for o in sess.run(["logits", POOLED], {"input_ids": ids,
                                                                      "attention_mask": np.ones_like(ids)}))
    return vec, lg


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.text.cped_embed", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=CACHE_DIR / "cped_pooled.npz")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tm, sess = pooled_model(get_settings().models_dir / "text-emotion")
    utts = [u for d in load_dialogues().values() for u in d]
    t0 = time.time()
    vec, lg = embed(tm, sess, [u.text for u in utts])
    ref = tm.logits([u.text for u in utts[:200]])
    if not np.array_equal(ref, lg[:200]):
        raise SystemExit("logits with the extra output differ from the served model's")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, uid=np.array([u.uid for u in utts]), vec=vec)
    log.info("%d utterances in %.0f s -> %s", len(utts), time.time() - t0, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
