"""Class weights of the text-emotion training loss."""
import numpy as np

from training.text.train_emotion import class_weights

COUNTS = np.array([10753, 10851, 14664, 6105, 1794, 2457])  # the training pool's angry … surprise


def test_default_is_the_square_root_of_the_inverse_frequency():
    w = class_weights(COUNTS)
    np.testing.assert_allclose(w, (COUNTS.sum() / (6 * COUNTS)) ** 0.5)


def test_class_balanced_weights_follow_the_effective_number():
    w = class_weights(COUNTS, 0.9999)
    eff = (1 - 0.9999 ** COUNTS) / (1 - 0.9999)
    np.testing.assert_allclose(w / w[0], eff[0] / eff)
    assert abs(w.sum() - 6) < 1e-9
    assert list(np.argsort(-w)[:2]) == [4, 5]  # the rarest classes weigh most
    # a small beta barely re-weights: every class has many more examples than 1 / (1 - beta)
    assert np.ptp(class_weights(COUNTS, 0.9)) < 1e-6
    # beta towards 1 approaches the full inverse frequency
    near = class_weights(COUNTS, 1 - 1e-9)
    np.testing.assert_allclose(near / near[0], COUNTS[0] / COUNTS, rtol=1e-3)
