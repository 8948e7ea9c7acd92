"""The training-time logistic fit: sign constraints hold and serving inference matches it."""
from __future__ import annotations

import numpy as np

from pipelines.audio.anger_model import ABS_FEATURES, FORMAT, REL_FEATURES, AcousticAngerModel, feature_vector
from pipelines.audio.stream import ChunkFeatures
from training.audio.train_anger import NONNEG, auc, fit_logistic, predict


def test_fit_respects_sign_constraints_and_matches_serving():
    rng = np.random.default_rng(0)
    names = list(ABS_FEATURES) + list(REL_FEATURES)
    n = 600
    x = rng.standard_normal((n, len(names)))
    signal = x[:, names.index("hf_logit")] - x[:, names.index("d_loudness_db")]
    y = (signal + 0.5 * rng.standard_normal(n) > 0).astype(int)
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values are imputed with the mean
    m = fit_logistic(x, y, np.ones(n), names)
    coef = dict(zip(names, m["coef"]))
    assert coef["hf_logit"] > 0.5
    assert coef["d_loudness_db"] >= 0.0  # the data says "louder = calmer"; the constraint forbids it
    assert all(coef[k] >= 0.0 for k in NONNEG if k in coef)
    # half of the true signal is forbidden, the allowed half still ranks well
    assert auc(predict(m, x)[y == 1], predict(m, x)[y == 0]) > 0.7

    served = AcousticAngerModel({"format": FORMAT, "models": {"absolute": m, "relative": m}})
    f = ChunkFeatures(1.0, 0.8, 4.0, 200.0, 5.0, -25.0, 0.5, -3.0, 0.4, 3, voiced_s=0.5, loudness_range_db=20.0)
    xv = feature_vector(names, f, None)
    assert abs(served.score(f, None) - predict(m, xv[None, :])[0]) < 1e-12
