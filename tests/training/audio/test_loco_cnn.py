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
