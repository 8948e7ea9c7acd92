"""Read a fine-tuned classifier's weights back out of its int8 ONNX export.

The shipped ``models/text-emotion/model.onnx`` is the only copy of the fine-tuned weights (the fp32 export is
deleted after quantisation). :func:`state_dict_from_int8_onnx` dequantises it into a torch ``state_dict`` for
``make_classifier(build_encoder(...))``, so the model can be re-exported (a new graph layout, a new quantiser)
without the hour of fine-tuning. Per-channel symmetric int8 weights re-quantise to the same integers, so a
re-export with the same quantiser changes nothing but the graph.

Where each weight belongs is read off the graph, not guessed from names: ``torch.onnx.export`` renames MatMul
weights (``onnx::MatMul_1710``), but the named bias each one's output is added to is still
``encoder.encoder.layer.0.attention.self.query.bias`` (in the fused graph: the bias input of the
``SkipLayerNormalization`` or ``BiasGelu`` that follows; the fused ``QAttention`` holds Q|K|V of one layer).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.errors import ModelNotAvailableError

_Q = ("_quantized", "_scale", "_zero_point")


def _dequantise(init: dict[str, np.ndarray], base: str, axis: int) -> np.ndarray:
    q = init[base + "_quantized"].astype(np.float32)
    scale = init[base + "_scale"].astype(np.float32)
    zero = init[base + "_zero_point"].astype(np.float32)
    if scale.ndim:  # per-channel: one scale per column of a MatMul weight
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def state_dict_from_int8_onnx(path: Path) -> dict[str, np.ndarray]:
    """``{torch parameter name: fp32 array}`` of a dynamic-int8 ONNX export of ``E5Classifier``
    (MatMulInteger for the linear layers, QAttention for Q|K|V once fused, quantised Gather for the embeddings);
    the arrays are fresh, writable copies."""
    import onnx
    from onnx import numpy_helper

    if not Path(path).is_file():
        raise ModelNotAvailableError(f"no ONNX model at {path}")
    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def bias_after(node, depth: int = 6) -> str:
        """The first named linear-layer bias downstream of ``node``: an ``Add`` (plain export) or the bias input
        of the fused ``SkipLayerNormalization`` / ``BiasGelu`` (optimised export)."""
        frontier = [node]
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for out in n.output:
                    for c in consumers.get(out, []):
                        named = [x for x in c.input if x in init and x.endswith(".bias") and "LayerNorm" not in x]
                        if named:
                            return named[0]
                        nxt.append(c)
            frontier = nxt
        raise ValueError(f"{path}: no named bias after {node.name or node.op_type}; not an E5Classifier export")

    state: dict[str, np.ndarray] = {}
    attention_layer = 0
    for node in graph.node:
        if node.op_type == "MatMulInteger":
            weight = next(x for x in node.input if x in init and x.endswith("_quantized"))
            name = bias_after(node)[: -len(".bias")] + ".weight"
            state[name] = np.ascontiguousarray(_dequantise(init, weight[: -len("_quantized")], axis=1).T)
        elif node.op_type == "QAttention":  # fused Q|K|V: one [hidden, 3*hidden] weight, layers in graph order
            w = _dequantise(init, node.input[1][: -len("_quantized")], axis=1)
            b = np.array(init[node.input[2]], dtype=np.float32)
            for part, (wp, bp) in zip(("query", "key", "value"), zip(np.split(w, 3, axis=1), np.split(b, 3))):
                prefix = f"encoder.encoder.layer.{attention_layer}.attention.self.{part}"
                state[prefix + ".weight"] = np.ascontiguousarray(wp.T)
                state[prefix + ".bias"] = np.ascontiguousarray(bp)
            attention_layer += 1
        elif node.op_type == "Gather" and node.input[0] in init and node.input[0].endswith("_quantized"):
            base = node.input[0][: -len("_quantized")]
            state[base] = _dequantise(init, base, axis=0)
    for name, value in init.items():
        # torch's own parameter names (LayerNorm weights, biases); the optimiser's constants are named otherwise
        if name.startswith(("encoder.", "head.")) and not name.endswith(_Q) and name not in state:
            state[name] = np.array(value, dtype=np.float32)
    if not any(k.endswith("word_embeddings.weight") for k in state):
        raise ValueError(f"{path}: no quantised word embeddings; not a dynamic-int8 E5Classifier export")
    return state
