"""The fold cue networks of train_anger_loco --save-folds: a fold's weights with the full model's calibration."""
from __future__ import annotations

import json

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.settings import Settings
from training.audio.train_anger_loco import save_folds


def test_fold_keeps_its_weights_and_takes_the_full_calibration(tmp_path):
    shipped = json.loads((Settings().models_dir / "acoustic-anger" / "model.json").read_text(encoding="utf-8"))
    fold = AcousticAngerModel({k: shipped[k] for k in ("format", "min_speech_s", "models", "blend_absolute")})
    full = json.loads(json.dumps(shipped))
    for which in ("absolute", "relative"):
        full["models"][which]["calib"] = [0.5, -1.0]
        full["models"][which]["prior_shift"] = -2.0
    save_folds({"emodb": fold}, full, tmp_path / "folds")
    got = json.loads((tmp_path / "folds" / "emodb.json").read_text(encoding="utf-8"))
    for which in ("absolute", "relative"):
        assert got["models"][which]["calib"] == [0.5, -1.0] and got["models"][which]["prior_shift"] == -2.0
        assert got["models"][which]["layers"] == shipped["models"][which]["layers"]  # the fold's own weights
    assert got["training"]["fold_without"] == "emodb"
    AcousticAngerModel(got)  # loads as a served model
