"""FGSM and PGD written with tf.GradientTape (robustness libraries lag behind Keras 3)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_LOSS = keras.losses.SparseCategoricalCrossentropy()


def _gradient_sign(model: keras.Model, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _LOSS(y, model(x, training=False))
    return tf.sign(tape.gradient(loss, x))


def fgsm(model: keras.Model, x: tf.Tensor, y: tf.Tensor, epsilon: float) -> tf.Tensor:
    """One signed-gradient step of size epsilon, clipped to the valid pixel range."""
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.clip_by_value(x + epsilon * _gradient_sign(model, x, y), 0.0, 1.0)


def pgd(model: keras.Model, x: tf.Tensor, y: tf.Tensor, epsilon: float, steps: int = 7) -> tf.Tensor:
    """Projected gradient descent inside the L-infinity ball of radius epsilon."""
    x = tf.convert_to_tensor(x, tf.float32)
    step = 2.5 * epsilon / steps
    adv = x
    for _ in range(steps):
        adv = adv + step * _gradient_sign(model, adv, y)
        adv = tf.clip_by_value(tf.clip_by_value(adv, x - epsilon, x + epsilon), 0.0, 1.0)
    return adv


def fgsm_numpy(model: keras.Model, x: np.ndarray, y: np.ndarray, epsilon: float, batch: int = 256) -> np.ndarray:
    out = [fgsm(model, x[i : i + batch], y[i : i + batch], epsilon).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)
