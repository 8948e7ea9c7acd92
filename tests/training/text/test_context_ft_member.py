"""The nested CV of the fine-tuned-encoder experiment never scores a turn with an encoder that saw its labels."""
import math

import numpy as np

from training.fusion.cped import TUNE_TV
from training.text.context_ft_member import encoder_for, ft_block, subsets


def test_nested_encoders_never_saw_the_turn_nor_the_fold_test_series():
    used = set()
    for held in TUNE_TV:
        test_enc = encoder_for(held, None)
        assert held not in test_enc and len(test_enc) == 2
        used.add(test_enc)
        for series in (s for s in TUNE_TV if s != held):
            enc = encoder_for(series, held)
            assert series not in enc and held not in enc and enc
            used.add(enc)
            plain = encoder_for(series, held, plain=True)
            assert series not in plain and held in plain  # usual stacking: optimistic by construction
    assert used == set(subsets())


def test_ft_block_floors_log_probs_and_gives_the_anger_logit():
    rows = [{"uid": "a"}, {"uid": "b"}]
    lp = {"a": [math.log(0.8), math.log(0.2), -30.0, -30.0, -30.0, -30.0],
          "b": [math.log(0.1), math.log(0.9), -30.0, -30.0, -30.0, -30.0]}
    x = ft_block(rows, lp, "logp")
    assert x.shape == (2, 6) and x.min() >= math.log(1e-4) - 1e-9
    z = ft_block(rows, lp, "angry")
    assert z.shape == (2, 1)
    np.testing.assert_allclose(z[:, 0], [math.log(0.8 / 0.2), math.log(0.1 / 0.9)], rtol=1e-6)
