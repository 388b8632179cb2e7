"""Fitting: plain Keras ``fit`` with augmentation, or an adversarial training loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from digits.normalise import MNIST_DIGIT_BOX
from digits.softening import INPUT_SOFTENING, model_input
from registry import Preprocessing, layout
from training import optim
from training.attacks import fgsm, pgd
from training.config import TrainConfig
from training.data import Splits
from training.failures import Diverged
from training.models import augmenter, build
from training.outliers import synthetic_outliers
from training.restroke import restroked

# Non-digits added to the training set, as a share of the digits, and their loss weight.
OUTLIER_SHARE = 0.4
OUTLIER_WEIGHT = 0.5


@dataclass
class Fitted:
    model: keras.Model  # outputs [probabilities, features]
    classifier: keras.Model  # outputs probabilities only (shares weights)
    history: dict[str, list[float]]
    seconds: float
    best_epoch: int | None = None  # 1-based epoch whose weights were kept (early stopping), else the last


# The input scaling every version records (metadata.json preprocessing.pixel_scale).
PIXEL_SCALE = 1.0 / 255.0


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,28,28,1] in 0..1: pixel * PIXEL_SCALE, what the model is fitted on (the
    augmentation then blurs each digit as the service's softening does) and the guards calibrated on;
    ``served_input`` is what it is scored on."""
    return (images.astype(np.float32) / 255.0)[..., None]


def version_preprocessing(config: TrainConfig) -> Preprocessing:
    """What the service does to every input of a version this config trains (metadata.json ``preprocessing``):
    scaled by PIXEL_SCALE, the digit fitted to MNIST's box, softened as much as the augmentation blurs the training
    digits (digits.softening.INPUT_SOFTENING; not at all without augmentation)."""
    return Preprocessing(
        pixel_scale=PIXEL_SCALE,
        canvas=layout.IMAGE_SIDE,
        digit_box=MNIST_DIGIT_BOX,
        softening=INPUT_SOFTENING if config.augment else 0.0,
    )


def served_input(images: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,28,28,1]: these digits as the model gets them when they are sent to the service
    (softened and scaled by the version's ``preprocessing``). Validation, evaluation, the guards' refusal rates and
    the champion's comparison use it, so a version's figures are those of the digits as served."""
    return model_input(images, preprocessing.softening, preprocessing.pixel_scale)[..., None]


def _dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size)
    if config.augment:
        aug = augmenter(config.seed)
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def outlier_exposure_loss(label_smoothing: float = 0.0) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Cross-entropy on digits; on outliers (label -1), cross-entropy to the uniform distribution.

    Label smoothing moves ``label_smoothing`` of each digit's target onto the uniform distribution, which
    is the outliers' whole target: smoothed cross-entropy = (1 - s) * CE(digit) + s * CE(uniform).
    """

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        log_p = tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
        uniform_loss = -tf.reduce_mean(log_p, axis=1)
        digit_loss = -tf.gather(log_p, tf.maximum(y, 0), batch_dims=1)
        digit_loss = (1.0 - label_smoothing) * digit_loss + label_smoothing * uniform_loss
        return tf.where(y >= 0, digit_loss, OUTLIER_WEIGHT * uniform_loss)

    return loss


def digit_accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Right digit on digits; no confident answer (top probability < 0.5) on outliers."""
    y = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
    right = tf.equal(tf.argmax(y_pred, axis=1), y)
    unsure = tf.reduce_max(y_pred, axis=1) < 0.5
    return tf.cast(tf.where(y >= 0, right, unsure), tf.float32)


def fit(splits: Splits, config: TrainConfig, verbose: int = 1) -> Fitted:
    """Train the configured network; ``verbose`` is Keras's (1: a progress bar an epoch, 0: silent)."""
    keras.utils.set_random_seed(config.seed)
    # Same seed, same weights: deterministic kernels and tf.data order (a small cost on CPU).
    tf.config.experimental.enable_op_determinism()
    x_train, y_train = splits.x_train, splits.y_train  # already cut to --limit (Splits.limited)
    if config.restroke:
        redrawn, labels = restroked(x_train, y_train, config.restroke, config.seed)
        x_train, y_train = np.concatenate([x_train, redrawn]), np.concatenate([y_train, labels])
    if config.outlier_exposure:
        outliers = synthetic_outliers(int(len(x_train) * OUTLIER_SHARE), x_train, config.seed)
        x_train = np.concatenate([x_train, outliers])
        y_train = np.concatenate([y_train, np.full(len(outliers), -1, dtype=y_train.dtype)])
    x, xv = as_model_input(x_train), served_input(splits.x_val, version_preprocessing(config))
    model = build(config.model)
    classifier = keras.Model(model.inputs, model.outputs[0], name=f"{model.name}_classifier")
    steps = int(np.ceil(len(x) / config.batch_size))
    optimizer = optim.optimizer(config, steps)
    ds = _dataset(x, y_train, config)
    started = time.perf_counter()
    if config.adversarial:
        history = _fit_adversarial(classifier, optimizer, ds, (xv, splits.y_val), config, steps)
        return Fitted(model, classifier, check_converging(history), time.perf_counter() - started)
    classifier.compile(
        optimizer=optimizer, loss=outlier_exposure_loss(config.label_smoothing), metrics=[digit_accuracy]
    )
    callbacks = optim.callbacks(config)
    result = classifier.fit(
        ds, validation_data=(xv, splits.y_val), epochs=config.epochs, callbacks=callbacks, verbose=verbose
    )
    history = {k.replace("digit_accuracy", "accuracy"): [float(v) for v in vals] for k, vals in result.history.items()}
    stopper = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
    best = stopper.best_epoch + 1 if stopper is not None else None
    return Fitted(model, classifier, check_converging(history), time.perf_counter() - started, best)


def check_converging(history: dict[str, list[float]]) -> dict[str, list[float]]:
    """``history`` when every epoch's loss is a number; Diverged, with what to change, when one is not (a learning
    rate far too large: the weights, and then everything computed from them, become NaN)."""
    bad = next((epoch for epoch, loss in enumerate(history.get("loss", []), 1) if not math.isfinite(loss)), None)
    if bad is not None:
        raise Diverged(
            f"the loss became {history['loss'][bad - 1]} in epoch {bad}; lower --learning-rate (or use the "
            "optimizer's default)"
        )
    return history


def _fit_adversarial(
    classifier: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    ds: tf.data.Dataset,
    validation: tuple[np.ndarray, np.ndarray],
    config: TrainConfig,
    steps: int,
) -> dict[str, list[float]]:
    per_image = outlier_exposure_loss(config.label_smoothing)

    def loss_fn(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(per_image(y, p))

    eps = config.adversarial_epsilon
    attack = fgsm if config.adversarial == "fgsm" else pgd

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Outliers (label -1) are attacked towards digit 0; their target stays uniform.
        x_adv = tf.stop_gradient(attack(classifier, xb, tf.maximum(yb, 0), eps))
        with tf.GradientTape() as tape:
            clean = classifier(xb, training=True)
            loss = 0.5 * (loss_fn(yb, clean) + loss_fn(yb, classifier(x_adv, training=True)))
        grads = tape.gradient(loss, classifier.trainable_variables)
        optimizer.apply_gradients(zip(grads, classifier.trainable_variables, strict=True))
        correct = tf.reduce_sum(digit_accuracy(yb, clean))
        return loss, correct

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_accuracy": []}
    for epoch in range(config.epochs):
        print(f"Epoch {epoch + 1}/{config.epochs} (adversarial {config.adversarial}, eps={eps})")
        bar = keras.utils.Progbar(steps, stateful_metrics=["accuracy"])
        total_loss = total_correct = seen = 0.0
        for i, (xb, yb) in enumerate(ds):
            loss, correct = step(xb, yb)
            total_loss += float(loss) * len(yb)
            total_correct += float(correct)
            seen += len(yb)
            bar.update(i + 1, [("loss", float(loss)), ("accuracy", total_correct / seen)])
        val_pred = classifier.predict(validation[0], verbose=0).argmax(1)
        history["loss"].append(total_loss / seen)
        history["accuracy"].append(total_correct / seen)
        history["val_accuracy"].append(float((val_pred == validation[1]).mean()))
        print(f"  val_accuracy: {history['val_accuracy'][-1]:.4f}")
    if config.ema:  # what Keras's fit does when it ends: the averaged weights become the model's
        optimizer.finalize_variable_values(classifier.trainable_variables)
    return history
