"""The optimiser, its learning-rate schedule and the fit callbacks a run's flags ask for."""

from __future__ import annotations

from pathlib import Path

import keras

from training.config import TrainConfig

COSINE_FLOOR = 0.05  # cosine decay ends at 5 % of the initial rate, not at zero
STEP_DROP = 0.1  # the step schedule multiplies the rate by this at half and at three quarters of the steps
# --ema: Keras keeps the average beside the weights and `fit` copies it into the model when it ends; 0.99 averages
# over the last ~100 steps (of ~3,500 in a default run; a --quick run's ~250 would still carry the initial weights).
# Measured with label smoothing 0.1 in benchmarks/README.md ("Accuracy on unseen digits").
EMA_MOMENTUM = 0.99


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    total = max(1, config.epochs * steps_per_epoch)
    rate = config.learning_rate
    if config.lr_schedule == "constant":
        return rate
    if config.lr_schedule == "step":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [total // 2, (3 * total) // 4], [rate, rate * STEP_DROP, rate * STEP_DROP**2]
        )
    return keras.optimizers.schedules.CosineDecay(rate, decay_steps=total, alpha=COSINE_FLOOR)


def optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = learning_rate(config, steps_per_epoch)
    ema = {"use_ema": config.ema, "ema_momentum": EMA_MOMENTUM}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=config.nesterov, **ema)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, momentum=config.momentum, **ema)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate, **ema)
    # training.config.OPTIMIZERS names the choices; a name added there needs its Keras class here.
    raise ValueError(f"no Keras optimiser for --optimizer {config.optimizer!r}")


def callbacks(config: TrainConfig) -> list[keras.callbacks.Callback]:
    # A loss that is no number ends the fit at once; train.check_converging says why.
    found: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if config.early_stopping:
        found.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping, restore_best_weights=True, verbose=1
            )
        )
    if config.tensorboard:
        found.append(keras.callbacks.TensorBoard(log_dir=str(Path(config.tensorboard)), histogram_freq=0))
    return found
