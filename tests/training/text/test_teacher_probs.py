"""The teacher file (training/text/teacher_file.py, written by teacher_probs.py): real SMP2020 texts, keyed by hash, read back in any order."""
from __future__ import annotations

import numpy as np
import pytest

from training.text.teacher_file import load_teacher, write_teacher
from training.text.teacher_probs import choose_ngram_weight, labelled_pool, ngram_out_of_fold
from training.text.train_emotion import TextSet, fit_tfidf


def test_teacher_file_round_trip_and_missing_texts(tmp_path, data_dir):
    pool = labelled_pool(data_dir / "text").texts
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


def test_ngram_member_is_scored_out_of_fold(data_dir):
    pool = labelled_pool(data_dir / "text")
    small = TextSet("small", pool.texts[:900], pool.labels[:900])
    lp = ngram_out_of_fold(small, folds=3, seed=13)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-6)
    y = np.asarray(small.labels)
    vec, clf = fit_tfidf(small, 13)  # in sample: the member has seen every text
    in_sample = np.mean(clf.predict(vec.transform(small.texts)) == y)
    out_of_fold = np.mean(lp.argmax(1) == y)
    assert out_of_fold < in_sample - 0.1, (out_of_fold, in_sample)
    weight, temperature = choose_ngram_weight(np.log(np.full((900, 6), 1 / 6)), lp, small.labels)
    assert weight > 0 and temperature > 0  # with a uniform e5 half only the member can carry the labels
