"""The served-path blend of v2 + CNN (training.audio.loco_cnn) and v2's opening clips (training.audio.loco)."""
import math

import pytest

from training.audio.loco import Rec, opening_clips, openings
from training.audio.loco_cnn import _blend


def _lg(p):
    return math.log(p / (1 - p))


V2 = {"a": {"cold": 0.8, "opened": 0.7}, "o1": {"cold": 0.3, "opened": None}, "o2": {"cold": 0.2, "opened": None}}
CNN = {"a": {"logits": [1.0, 3.0, 5.0]}, "o1": {"logits": [0.5, 1.5]}, "o2": {"logits": [2.0]}}


def test_blend_cold_uses_first_two_windows_opened_all():
    s = _blend(V2, CNN, {"a": ["o1", "o2"]}, 0.5)
    assert s["a"]["cold"] == pytest.approx(_lg(0.8) + 0.5 * 2.0)
    assert s["a"]["opened"] == pytest.approx(_lg(0.7) + 0.5 * 3.0)
    assert s["o1"]["opened"] is None


def test_blend_relative_subtracts_opening_windows_mean():
    s = _blend(V2, CNN, {"a": ["o1", "o2"]}, 1.0, relative=True)
    assert s["a"]["opened"] == pytest.approx(_lg(0.7) + 3.0 - 4.0 / 3.0)  # opening windows 0.5, 1.5, 2.0
    assert _blend(V2, CNN, {}, 1.0, relative=True)["a"]["opened"] is None  # no opening: not scored


def test_blend_v2_alone_is_its_logit():
    s = _blend(V2, {}, {}, None)
    assert s["a"] == {"cold1": None, "cold": pytest.approx(_lg(0.8)), "opened": pytest.approx(_lg(0.7))}


def _rec(i, spk, calm, dur):
    return Rec(i, "c", "neutral" if calm else "angry", spk, calm, dur, chunks=[i])


def test_opening_clips_never_the_clip_and_long_enough():
    recs = [_rec(f"n{k}", "s", True, 4.0) for k in range(8)] + [_rec("a", "s", False, 3.0), _rec("b", "t", True, 2.0)]
    op = opening_clips(recs, 10.0)
    for r in recs[:9]:
        ids = [c.id for c in op[r.id]]
        assert r.id not in ids and len(ids) == 3  # 4 + 4 + 4 s >= 10 s
        assert openings(recs, 10.0)[r.id] == ids  # the chunks (here: the ids) of those clips
    assert "b" not in op  # the only calm clip of its speaker: no opening


@pytest.mark.parametrize(("head", "arch"), [("binary", "1d"), ("softmax", "1d"), ("aux", "1d"), ("binary", "2d")])
def test_every_head_learns_and_scores_one_anger_logit_per_window(head, arch):
    """Each head trains on windows whose anger is a raised high band (happy: a raised low band, so "loud" alone
    does not separate them); the anger logit ranks angry windows first and the export sees one number per window."""
    import numpy as np
    import torch

    from training.audio.loco_cnn import W, train
    from training.audio.mel_cache import N_MEL

    rng = np.random.default_rng(0)
    emo = np.array(["angry", "neutral", "happy", "calm"] * 40)
    x = rng.normal(0.0, 1.0, (len(emo), W, N_MEL)).astype(np.float32)
    x[emo == "angry", :, 30:] += 2.0
    x[emo == "happy", :, :10] += 2.0
    y = (emo == "angry").astype(np.float32)
    net = train(x, y, np.ones(len(emo)), epochs=6, seed=0, ch=8, head=head, emotions=emo, arch=arch)
    with torch.no_grad():
        z = net(torch.from_numpy(x)).numpy()
    assert z.shape == (len(emo),)
    ang, rest = z[emo == "angry"], z[emo != "angry"]
    assert (ang[:, None] > rest[None, :]).mean() > 0.95


def _moving_high_band(n_per=40, seed=0):
    """Windows whose anger is a high band that rises and falls every 5 frames (a change over time, which the
    ``cmn`` norm keeps), each window on its own random line level per band (which it removes)."""
    import numpy as np

    from training.audio.loco_cnn import W
    from training.audio.mel_cache import N_MEL

    rng = np.random.default_rng(seed)
    emo = np.array(["angry", "neutral", "happy", "calm"] * n_per)
    x = rng.normal(0.0, 1.0, (len(emo), W, N_MEL)).astype(np.float32)
    x += rng.normal(0.0, 5.0, (len(emo), 1, N_MEL)).astype(np.float32)  # a per-window spectral shape
    x[emo == "angry", :, 30:] += np.where((np.arange(W) // 5) % 2 == 0, 2.0, -2.0)[:, None].astype(np.float32)
    corpus = np.array(["c1", "c2"] * (len(emo) // 2))
    return x, emo, corpus


def test_cmn_norm_ignores_a_fixed_spectral_shape_and_learns_its_movement():
    import numpy as np
    import torch

    from training.audio.loco_cnn import Net, train

    x, emo, _ = _moving_high_band()
    net = train(x, (emo == "angry").astype(np.float32), np.ones(len(emo)), epochs=6, seed=0, ch=8, norm="cmn")
    with torch.no_grad():
        z = net(torch.from_numpy(x)).numpy()
        shifted = net(torch.from_numpy(x + np.linspace(-9, 9, x.shape[2], dtype=np.float32))).numpy()
    assert np.allclose(z, shifted, atol=1e-4)  # a line's tilt or a voice's spectral envelope: no change
    ang, rest = z[emo == "angry"], z[emo != "angry"]
    assert (ang[:, None] > rest[None, :]).mean() > 0.95
    with pytest.raises(ValueError, match="norm"):
        Net(8, norm="whiten")


def test_adversarial_training_still_learns_anger_and_needs_the_corpora():
    import numpy as np
    import torch

    from training.audio.loco_cnn import train

    x, emo, corpus = _moving_high_band()
    y = (emo == "angry").astype(np.float32)
    net = train(x, y, np.ones(len(emo)), epochs=6, seed=0, ch=8, norm="cmn", corpus=corpus, adv=0.3)
    with torch.no_grad():
        z = net(torch.from_numpy(x)).numpy()
    ang, rest = z[emo == "angry"], z[emo != "angry"]
    assert (ang[:, None] > rest[None, :]).mean() > 0.95
    assert not any(k.startswith("adv") for k in net.state_dict())  # the corpus classifier is never exported
    with pytest.raises(ValueError, match="corpus"):
        train(x, y, np.ones(len(emo)), epochs=1, adv=0.3)


def test_emotion_heads_need_the_emotions():
    import numpy as np

    from training.audio.loco_cnn import W, train
    from training.audio.mel_cache import N_MEL

    with pytest.raises(ValueError, match="emotion"):
        train(np.zeros((4, W, N_MEL), np.float32), np.zeros(4, np.float32), np.ones(4), 1, head="softmax")


def test_mean_logits_averages_window_by_window_and_refuses_other_windows():
    from training.audio.loco_cnn import mean_logits

    got = mean_logits([{"a": {"logits": [1.0, 3.0]}, "b": {"logits": [0.0]}},
                       {"a": {"logits": [3.0, 5.0]}, "b": {"logits": [2.0]}, "c": {"logits": [9.0]}}])
    assert got == {"a": {"logits": [2.0, 4.0]}, "b": {"logits": [1.0]}}
    with pytest.raises(ValueError, match="different windows"):
        mean_logits([{"a": {"logits": [1.0]}}, {"a": {"logits": [1.0, 2.0]}}])


def _part(per_corpus, oof, **flags):
    cfg = {"epochs": 20, "seeds": 1, "seed0": 0, "clean": True, "ch": 32, "share": {"angry": 0.5}, "head": "binary",
           "arch": "2d"}
    return {**cfg, **flags, "per_corpus": per_corpus, "average": {}, "oof": oof}


def test_merge_joins_disjoint_folds_and_averages_them_again():
    from training.audio.loco_cnn import merge

    got = merge([_part({"emodb": {"ang_oth.cold": 0.8}}, {"x": {"logits": [1.0]}}),
                 _part({"savee": {"ang_oth.cold": 0.6, "ang_neu.cold": 0.9}}, {"y": {"logits": [2.0]}})])
    assert got["per_corpus"].keys() == {"emodb", "savee"}
    assert got["average"] == {"ang_oth.cold": pytest.approx(0.7), "ang_neu.cold": pytest.approx(0.9)}
    assert got["oof"] == {"x": {"logits": [1.0]}, "y": {"logits": [2.0]}}
    assert got["arch"] == "2d" and got["epochs"] == 20


def test_merge_refuses_other_flags_or_a_fold_twice():
    from training.audio.loco_cnn import merge

    with pytest.raises(ValueError, match="epochs"):
        merge([_part({"emodb": {}}, {}), _part({"savee": {}}, {}, epochs=12)])
    with pytest.raises(ValueError, match="emodb"):
        merge([_part({"emodb": {}}, {}), _part({"emodb": {}}, {})])
