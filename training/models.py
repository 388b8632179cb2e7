"""A registered architecture (``training.architectures``) made into the model every version exports: input
``image``, outputs ``probabilities`` and ``features`` (the penultimate layer, read by the out-of-distribution
guard)."""

from __future__ import annotations

import keras
from keras import layers

from registry import layout
from training.architectures import ARCHITECTURES


def build(name: str) -> keras.Model:
    """The named architecture with the shared head: features -> [dropout] -> Dense 10 softmax."""
    arch = ARCHITECTURES[name]
    inputs = keras.Input((layout.IMAGE_SIDE, layout.IMAGE_SIDE, 1), name=layout.INPUT_NAME)
    body = arch.features(inputs)
    if len(body.shape) != 2:
        raise ValueError(f"architecture {name!r} must return [N, F] features, got shape {tuple(body.shape)}")
    # An identity layer gives the features their output name whatever layer the architecture ended with.
    features = layers.Identity(name=layout.OUTPUT_FEATURES)(body)
    # The softmax layer is made before the dropout, as the networks were written before this function: layers
    # draw their seeds as they are made, so the order keeps "same seed, same model" across the change.
    softmax = layers.Dense(layout.NUM_CLASSES, activation="softmax", name=layout.OUTPUT_PROBABILITIES)
    probs = softmax(layers.Dropout(arch.head_dropout)(features) if arch.head_dropout else features)
    return keras.Model(inputs, [probs, features], name=name)


def augmenter(seed: int) -> keras.Sequential:
    """Small shifts, rotations and zooms: people's digits are not perfectly centred."""
    return keras.Sequential(
        [
            layers.RandomRotation(0.05, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
        ],
        name="augment",
    )
