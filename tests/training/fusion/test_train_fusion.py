from __future__ import annotations

import numpy as np
import pytest

from training.fusion.cped import load_dialogues, syllables
from training.fusion.train_fusion import auc, brier, ece, fit_logistic, prior_params


def test_fit_logistic_recovers_coefficients():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 2))
    z = -1.0 + 1.5 * X[:, 0] - 0.5 * X[:, 1]
    y = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(float)
    b, w = fit_logistic(X, y, l2=0.0)
    assert b == pytest.approx(-1.0, abs=0.08)
    assert w == pytest.approx([1.5, -0.5], abs=0.08)
    # a strong prior keeps the coefficients at its centre
    _, w2 = fit_logistic(X, y, l2=1e7, prior=(0.0, [0.3, 0.3]))
    assert w2 == pytest.approx([0.3, 0.3], abs=0.01)


def test_metrics():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    assert ece(p, y) < 0.03  # calibrated by construction
    assert ece(np.clip(p + 0.3, 0, 1), y) > 0.2
    assert brier(np.zeros(4), np.array([0, 0, 1, 1])) == 0.5
    s = rng.random(300)
    t = (rng.random(300) < 0.4).astype(int)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[t == 1] for b in s[t == 0]])
    assert auc(s, t) == pytest.approx(brute)


def test_prior_params_cover_all_groups():
    p = prior_params()
    assert set(p.groups) == {"acoustic", "prosody", "text", "keyword"} and p.k(1) == 1.0


def test_cped_replay_timings(data_dir):
    d = load_dialogues(data_dir / "text" / "cped-valid" / "valid_split.csv")
    assert len(d) == 934
    for utts in list(d.values())[:50]:
        for a, b in zip(utts, utts[1:]):
            assert b.t_start > a.t_end  # strictly ordered, with a gap
        for u in utts:
            assert u.t_end - u.t_start == pytest.approx(max(0.6, syllables(u.text) / 4.0))
    assert syllables("我要打12315投诉 ok") == 7
