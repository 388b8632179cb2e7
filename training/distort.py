"""Elastic distortions (Simard, Steinkraus and Platt, 2003): each image is warped by a random displacement
field smoothed with a Gaussian, which imitates the wobble of handwriting that shifts, rotations and zooms
cannot. A Keras layer, so that it draws from a seeded generator like Keras's own random layers."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    radius = math.ceil(2 * sigma)
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(taps**2) / (2 * sigma**2))
    return kernel / tf.reduce_sum(kernel)


def _bilinear(images: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor) -> tf.Tensor:
    """images [B, H, W] sampled at fractional (ys, xs) [B, H, W]; outside the image reads as background (0)."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    y0, x0 = tf.floor(ys), tf.floor(xs)
    wy, wx = ys - y0, xs - x0
    b = tf.broadcast_to(tf.range(batch)[:, None, None], tf.shape(ys))

    def at(yy: tf.Tensor, xx: tf.Tensor) -> tf.Tensor:
        yi, xi = tf.cast(yy, tf.int32), tf.cast(xx, tf.int32)
        inside = (yi >= 0) & (yi < height) & (xi >= 0) & (xi < width)
        idx = tf.stack([b, tf.clip_by_value(yi, 0, height - 1), tf.clip_by_value(xi, 0, width - 1)], axis=-1)
        return tf.gather_nd(images, idx) * tf.cast(inside, images.dtype)

    top = (1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)
    bottom = (1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)
    return (1 - wy) * top + wy * bottom


class ElasticDistortion(keras.layers.Layer):
    """Displacements uniform in [-1, 1] per pixel, smoothed by a Gaussian of ``sigma`` px, scaled by ``alpha``.

    24 and 4 move pixels by ~0.9 px on average, at most ~3 px; Simard's 34 turned some zeros into sixes.
    The identity when not training."""

    def __init__(self, alpha: float = 24.0, sigma: float = 4.0, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma = alpha, sigma
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return inputs
        shape = tf.shape(inputs)
        noise = keras.random.uniform((shape[0], shape[1], shape[2], 2), -1.0, 1.0, seed=self.seed_generator)
        kernel = _gaussian_kernel(self.sigma)
        size = int(kernel.shape[0])
        # Separable blur of both displacement channels: a column pass then a row pass.
        rows = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, 2, 1])
        cols = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, 2, 1])
        field = tf.nn.depthwise_conv2d(noise, rows, [1, 1, 1, 1], "SAME")
        field = self.alpha * tf.nn.depthwise_conv2d(field, cols, [1, 1, 1, 1], "SAME")
        grid_y, grid_x = tf.meshgrid(
            tf.range(shape[1], dtype=tf.float32), tf.range(shape[2], dtype=tf.float32), indexing="ij"
        )
        warped = _bilinear(inputs[..., 0], grid_y + field[..., 0], grid_x + field[..., 1])
        return warped[..., None]
