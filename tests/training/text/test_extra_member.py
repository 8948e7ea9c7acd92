"""The extra n-gram members' data (training/text/extra_member.py): the real review and NLPCC files, read whole."""
from __future__ import annotations

from collections import Counter

from training.text.extra_member import CLASSES, load_nlpcc8, load_reviews


def test_reviews_are_read_whole_with_both_labels(data_dir):
    texts, labels = load_reviews(data_dir / "text" / "reviews")
    assert len(texts) == len(labels) > 80_000
    counts = Counter(labels)
    assert set(counts) == {0, 1} and min(counts.values()) > 35_000
    assert all(t and "\ufeff" not in t and t == " ".join(t.split()) for t in texts)


def test_nlpcc8_keeps_anger_and_disgust_apart(data_dir):
    texts, labels = load_nlpcc8(data_dir / "text")
    counts = Counter(CLASSES["nlpcc8"][i] for i in labels)
    assert set(counts) == set(CLASSES["nlpcc8"]) and len(texts) > 13_000
    assert counts["anger"] > 500 and counts["disgust"] > 500
