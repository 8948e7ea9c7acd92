"""Fitting the char n-gram ensemble member (training/text/ngram_fit.py): parity of the converted numpy model
(pipelines/text/ngram.py) with scikit-learn, file round trip, and an ensemble artifact (shipped e5 + a member fitted
on real SMP2020 text) through TextEmotionModel."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.text.emotion import LABELS, TextEmotionModel, combine
from pipelines.text.ngram import CharNgramModel, prepare
from tests.pipelines.text.helpers_text import ensemble_config
from training.text.ngram_fit import from_sklearn

ANGRY = ["你们这是什么破服务！气死我了，马上给我退钱！", "垃圾客服，态度恶劣，我要投诉你们！"]
CALM = ["我想查询一下我的订单物流信息。", "谢谢你们，问题解决了，非常满意！"]


@pytest.fixture(scope="module")
def fitted(data_dir):
    """TfidfVectorizer + LogisticRegression fitted as training.text.train_emotion.fit_tfidf does, on 4,000 real
    SMP2020 training texts; 500 more held out."""
    pytest.importorskip("sklearn")
    from training.text.train_emotion import TextSet, fit_tfidf, load_smp_train

    smp = load_smp_train(data_dir / "text")
    idx = np.random.default_rng(0).choice(len(smp.texts), 4500, replace=False)
    train = TextSet("t", [smp.texts[i] for i in idx[:4000]], [smp.labels[i] for i in idx[:4000]])
    vec, clf = fit_tfidf(train, seed=0)
    return vec, clf, [smp.texts[i] for i in idx[4000:]]


def test_probabilities_equal_sklearn(fitted, tmp_path):
    vec, clf, held = fitted
    texts = held[:300] + ["", "！！！", "你们这什么破服务 我要投诉 12315", "ＯＫ好的谢谢"]
    ref = clf.predict_proba(vec.transform([prepare(t) for t in texts]))
    model = from_sklearn(vec, clf)
    assert np.allclose(np.exp(model.log_probs(texts)), ref, atol=1e-9)
    model.save(tmp_path)
    stored = CharNgramModel.load(tmp_path)  # float16 weights on disk
    assert stored.n_features == model.n_features
    assert np.abs(np.exp(stored.log_probs(texts)) - ref).max() < 0.01
    assert (stored.log_probs(texts).argmax(1) == ref.argmax(1)).mean() > 0.98


def test_binary_classifier_gives_sklearn_probabilities(fitted):
    """A binary LogisticRegression converts to a two-class model (class 0 scored 0) with sklearn's probabilities."""
    from sklearn.linear_model import LogisticRegression

    vec, clf6, held = fitted
    X = vec.transform([prepare(t) for t in held])
    y = (clf6.predict(X) == LABELS.index("angry")).astype(int)  # binary target on real text: the 6-class angry calls
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(X, y)
    texts = held[:300] + ANGRY + CALM + [""]
    ref = clf.predict_proba(vec.transform([prepare(t) for t in texts]))
    model = from_sklearn(vec, clf)
    assert np.allclose(np.exp(model.log_probs(texts)), ref, atol=1e-9)


def test_from_sklearn_refuses_other_vectorizers(fitted):
    from sklearn.feature_extraction.text import TfidfVectorizer

    _, clf, held = fitted
    with pytest.raises(ValueError, match="analyzer='char'"):
        from_sklearn(TfidfVectorizer(analyzer="word").fit(held), clf)


@pytest.fixture(scope="module")
def ensemble_dir(fitted, tmp_path_factory):
    """The shipped e5 artifact plus the fitted member and an ``ensemble`` block, as --ngram-only writes it."""
    vec, clf, _ = fitted
    d = ensemble_config(tmp_path_factory.mktemp("ensemble"))
    from_sklearn(vec, clf).save(d)
    return d


def test_ensemble_artifact_through_text_emotion_model(ensemble_dir):
    model = TextEmotionModel.load(ensemble_dir)
    assert model.ngram_weight == 0.7 and model.ensemble_temperature == 1.5
    texts = ANGRY + CALM + ["", "😡"]
    results = model.predict(texts)
    served = np.array([[r.probs[k] for k in LABELS] for r in results])
    assert np.allclose(served.sum(1), 1.0) and all(r.label in LABELS for r in results)
    # exactly the documented combination of the two members
    member = CharNgramModel.load(ensemble_dir).log_probs(texts)
    expected = combine(model.logits(texts) / model.temperature, member, 0.7, 1.5)
    assert np.allclose(served, expected, atol=1e-9)
    e5_alone = combine(model.logits(texts) / model.temperature, None, 0.0, 1.0)
    assert np.abs(served - e5_alone).max() > 1e-3  # the member contributes
    assert [r.label for r in results[:2]] == ["angry", "angry"]
    assert max(r.anger for r in results[2:4]) < min(r.anger for r in results[:2])

