"""The teacher file of training/text/teacher_probs.py: real SMP2020 texts, keyed by hash, read back in any order."""
from __future__ import annotations

import numpy as np
import pytest

from training.text.teacher_probs import load_teacher, training_pool, write_teacher


def test_teacher_file_round_trip_and_missing_texts(tmp_path, data_dir):
    pool = training_pool(data_dir / "text")
    assert len(pool) > 45_000 and len(pool) == len(set(pool))
    texts = pool[:200]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=len(texts))
    path = tmp_path / "teacher.npz"
    write_teacher(probs, texts + texts[:3], path, {"models": ["test"]})  # duplicates keep the first row
    got = load_teacher(path, texts[::-1])
    np.testing.assert_allclose(got, probs[::-1], atol=2e-3)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="no probabilities for 1 of 2"):
        load_teacher(path, [texts[0], pool[500]])
