"""The networks, registered by name in this one place: `--model` choices, `--help` and the tests come from here.

An architecture is one function decorated with ``@architecture``: it takes the 28x28x1 input tensor and returns
the penultimate feature tensor ([N, F]); ``training.models.build`` adds the named ``features`` output and the
softmax head, so every architecture exports, calibrates the guards and serves the same way. Keras is imported
inside each function: this module is read by ``training.config`` to validate flags before TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras import KerasTensor

FeatureBuilder = Callable[["KerasTensor"], "KerasTensor"]


@dataclass(frozen=True)
class Architecture:
    name: str
    summary: str  # one line for --help and the docs
    features: FeatureBuilder
    head_dropout: float = 0.0  # dropout between the features and the softmax layer


ARCHITECTURES: dict[str, Architecture] = {}


def architecture(name: str, summary: str, *, head_dropout: float = 0.0) -> Callable[[FeatureBuilder], FeatureBuilder]:
    """Register ``fn`` under ``name``; a second registration of a name is a mistake, not an override."""

    def register(fn: FeatureBuilder) -> FeatureBuilder:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        ARCHITECTURES[name] = Architecture(name, summary, fn, head_dropout)
        return fn

    return register


@architecture(
    "cnn",
    "two convolutions (32, 64), dropout, Dense 256, a 64-unit feature layer; 445,770 parameters",
    head_dropout=0.1,
)
def cnn(inputs: KerasTensor) -> KerasTensor:
    """The Dense 256 holds 410k of the parameters and costs a fifth of the second convolution's multiply-adds.
    It scores higher on unseen digits than the 64-unit layer alone, and the features stay 64 wide: the
    out-of-distribution guard's class means and covariance are fitted on them, and fitted in 256 dimensions
    they refused fewer garments (benchmarks/README.md). Two convolutions keep batched CPU inference near
    50 us per image."""
    from keras import layers

    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(256, activation="relu")(x)
    return layers.Dense(64, activation="relu")(x)


@architecture("mlp", "the seed's baseline: Flatten -> Dense 32 -> Dense 64 -> Dense 10; 27,882 parameters")
def mlp(inputs: KerasTensor) -> KerasTensor:
    from keras import layers

    x = layers.Flatten()(inputs)
    x = layers.Dense(32, activation="relu")(x)
    return layers.Dense(64, activation="relu")(x)


@architecture("cnn_bn", "three convolutions with BatchNormalization, global average pooling; 94,634 parameters")
def cnn_bn(inputs: KerasTensor) -> KerasTensor:
    """Conv -> BatchNormalization -> Activation blocks (no bias: the normalisation's offset replaces it) and a
    GlobalAveragePooling2D instead of Flatten + Dense, so the 128 features cost no dense parameters."""
    from keras import layers

    x = inputs
    for filters, padding, pool in ((32, "same", True), (64, "valid", True), (128, "valid", False)):
        x = layers.Conv2D(filters, 3, padding=padding, use_bias=False)(x)
        # Keras's default momentum (0.99) needs hundreds of steps before the moving statistics the exported
        # graph uses catch up with the batches; 0.9 (PyTorch's default) serves short runs too.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.Activation("relu")(x)
        if pool:
            x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)
