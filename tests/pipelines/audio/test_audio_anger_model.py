"""AcousticAngerModel on EmoDB speaker 16, which the shipped model never saw in training."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from helpers_audio import at_rate, emodb, stream

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.audio.baseline import SpeakerBaseline
from pipelines.errors import ModelNotAvailableError
from pipelines.settings import Settings

HELD_OUT = "16"


@pytest.fixture(scope="module")
def model():
    return AcousticAngerModel.load(Settings().models_dir / "acoustic-anger" / "model.json")


def _auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size))


def test_model_trained_without_held_out_speaker(model):
    assert HELD_OUT in model.spec["training"]["held_out_emodb_speakers"]


@pytest.mark.parametrize("sr", [8000, 16000])
def test_ranks_anger_above_neutral_for_unseen_speaker(data_dir, model, sr):
    rows = list(csv.DictReader(open(data_dir / "speech" / "emodb" / "manifest.csv", encoding="utf-8")))
    rows = [r for r in rows if r["speaker"] == HELD_OUT and r["emotion"] in ("anger", "neutral")]
    feats = {r["path"]: stream(at_rate(emodb(data_dir, r["path"][4:-4]), sr), sr) for r in rows}
    scores = {"abs": {"anger": [], "neutral": []}, "rel": {"anger": [], "neutral": []}}
    for r in rows:
        # baseline: the speaker's neutral clips of other sentences (never the scored clip)
        b = SpeakerBaseline(baseline_seconds=float("inf"))
        for o in rows:
            if o["emotion"] == "neutral" and o["text_code"] != r["text_code"]:
                for f in feats[o["path"]]:
                    b.update(f)
        b.finalize()
        fs = [f for f in feats[r["path"]] if f.speech_s > 0.2]
        a = [model.score(f, None) for f in fs]
        rl = [model.score(f, b.delta(f)) for f in fs]
        assert all(0.0 <= v <= 1.0 for v in a + rl)
        scores["abs"][r["emotion"]].append(np.mean(a))
        scores["rel"][r["emotion"]].append(np.mean(rl))
    assert len(scores["abs"]["anger"]) >= 5 and len(scores["abs"]["neutral"]) >= 5
    assert _auc(scores["abs"]["anger"], scores["abs"]["neutral"]) > 0.8
    assert _auc(scores["rel"]["anger"], scores["rel"]["neutral"]) > 0.85


def test_no_speech_gives_none(model):
    f = stream(np.zeros(16000), 16000)[0]
    assert model.score(f, None) is None
    assert model.explain(f, None) == {}


def test_explain_sums_to_logit(data_dir, model):
    import math

    f = stream(emodb(data_dir, "16a01Wb"), 16000)[0]
    p = model.score(f, None)
    contrib = model.explain(f, None)
    logit = sum(contrib.values()) + model.absolute.intercept + model.absolute.prior_shift
    assert p == pytest.approx(1 / (1 + math.exp(-logit)))


def test_missing_model_raises(tmp_path):
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelNotAvailableError):
        AcousticAngerModel.load(tmp_path / "bad.json")
