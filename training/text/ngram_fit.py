"""Fitting side of the char n-gram ensemble member: a scikit-learn TF-IDF + logistic regression pair converted
into the numpy-only :class:`pipelines.text.ngram.CharNgramModel` that serving loads."""
from __future__ import annotations

from pipelines.text.ngram import NGRAM_RANGE, CharNgramModel


def from_sklearn(vectorizer, classifier) -> CharNgramModel:
    """Convert a fitted ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)`` and a
    multinomial ``LogisticRegression``."""
    if (vectorizer.analyzer, tuple(vectorizer.ngram_range), vectorizer.sublinear_tf, vectorizer.norm,
            vectorizer.lowercase) != ("char", NGRAM_RANGE, True, "l2", True):
        raise ValueError("expected TfidfVectorizer(analyzer='char', ngram_range=(1, 3), sublinear_tf=True)")
    vocab = [None] * len(vectorizer.vocabulary_)
    for g, i in vectorizer.vocabulary_.items():
        vocab[i] = g
    return CharNgramModel(vocab, vectorizer.idf_, classifier.coef_.T, classifier.intercept_)
