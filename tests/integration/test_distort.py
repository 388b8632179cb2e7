"""The elastic distortion layer the accuracy experiments measure (benchmarks/unseen_accuracy.py --elastic on)."""

from __future__ import annotations

import numpy as np

from training.distort import ElasticDistortion


def _digits() -> np.ndarray:
    x = np.zeros((4, 28, 28, 1), np.float32)
    x[:, 6:22, 12:16] = 1.0  # a vertical stroke, a "1"
    return x


def test_elastic_warps_move_ink_but_keep_shape_range_and_amount() -> None:
    x = _digits()
    out = ElasticDistortion(seed=0)(x, training=True).numpy()
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - x).mean() > 0.01  # the stroke moved
    assert abs(out.sum() - x.sum()) / x.sum() < 0.15  # bent, not erased or thickened
    assert not np.allclose(out[0], out[1])  # each image gets its own field


def test_elastic_is_the_identity_outside_training_and_repeatable_by_seed() -> None:
    x = _digits()
    assert np.array_equal(ElasticDistortion(seed=0)(x, training=False), x)
    a = ElasticDistortion(seed=3)(x, training=True).numpy()
    b = ElasticDistortion(seed=3)(x, training=True).numpy()
    assert np.allclose(a, b)
