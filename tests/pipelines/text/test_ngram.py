"""The char n-gram ensemble member at serving time (pipelines/text/ngram.py): features, and an ensemble config
whose member files are missing.  Fitting, the parity with scikit-learn and a fitted ensemble artifact are tested in
tests/training/text/test_ngram_fit.py."""
from __future__ import annotations

import json

import pytest

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import get_settings
from pipelines.text.emotion import TextEmotionModel
from pipelines.text.ngram import char_ngrams, prepare


def test_char_ngrams_and_prepare():
    assert char_ngrams("投诉你") == ["投", "诉", "你", "投诉", "诉你", "投诉你"]
    assert char_ngrams("好") == ["好"] and char_ngrams("") == []
    assert prepare("  我要\t投诉\n  OK ") == "我要 投诉 ok"


def _ensemble_config(d):
    """The shipped e5 files (linked) and its config.json with an ``ensemble`` block (weight 0.7, T 1.5)."""
    src = get_settings().models_dir / "text-emotion"
    for f in ("tokenizer.json", "model.onnx"):
        (d / f).symlink_to(src / f)
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    cfg["ensemble"] = {"ngram_weight": 0.7, "temperature": 1.5}
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


def test_shipped_artifact_has_no_member():
    assert TextEmotionModel.load(get_settings().models_dir / "text-emotion").ngram_weight == 0.0


def test_ensemble_config_without_member_files_is_refused(tmp_path):
    _ensemble_config(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="n-gram"):
        TextEmotionModel.load(tmp_path)
