"""The char n-gram ensemble member at serving time (pipelines/text/ngram.py): features, and an ensemble config
whose member files are missing.  Fitting, the parity with scikit-learn and a fitted ensemble artifact are tested in
tests/training/text/test_ngram_fit.py."""
from __future__ import annotations

import pytest

from pipelines.errors import ModelNotAvailableError
from pipelines.settings import get_settings
from pipelines.text.emotion import TextEmotionModel
from pipelines.text.ngram import char_ngrams, prepare
from tests.pipelines.text.helpers_text import ensemble_config


def test_char_ngrams_and_prepare():
    assert char_ngrams("投诉你") == ["投", "诉", "你", "投诉", "诉你", "投诉你"]
    assert char_ngrams("好") == ["好"] and char_ngrams("") == []
    assert prepare("  我要\t投诉\n  OK ") == "我要 投诉 ok"


def test_shipped_artifact_has_no_member():
    assert TextEmotionModel.load(get_settings().models_dir / "text-emotion").ngram_weight == 0.0


def test_ensemble_config_without_member_files_is_refused(tmp_path):
    ensemble_config(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="n-gram"):
        TextEmotionModel.load(tmp_path)
