"""Fitting side of the char n-gram ensemble member: a scikit-learn TF-IDF + logistic regression pair converted
into the numpy-only :class:`pipelines.text.ngram.CharNgramModel` that serving loads."""
from __future__ import annotations

from pipelines.text.ngram import NGRAM_RANGE, CharNgramModel


def from_sklearn(vectorizer, classifier) -> CharNgramModel:
    """Convert a fitted ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)`` and a
    ``LogisticRegression`` (multinomial, or binary: then the served model's two classes are scored 0 and w·x + b,
    which gives the same probabilities)."""
    import numpy as np

    if (vectorizer.analyzer, tuple(vectorizer.ngram_range), vectorizer.sublinear_tf, vectorizer.norm,
            vectorizer.lowercase) != ("char", NGRAM_RANGE, True, "l2", True):
        raise ValueError("expected TfidfVectorizer(analyzer='char', ngram_range=(1, 3), sublinear_tf=True)")
    vocab = [None] * len(vectorizer.vocabulary_)
    for g, i in vectorizer.vocabulary_.items():
        vocab[i] = g
    coef, intercept = classifier.coef_.T, classifier.intercept_
    if coef.shape[1] == 1:  # binary: class 0 gets a zero score
        coef = np.hstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    return CharNgramModel(vocab, vectorizer.idf_, coef, intercept)
