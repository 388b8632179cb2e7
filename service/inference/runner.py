"""What the batcher runs: one model version's call, with the batch-wide steps around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The version's preprocessing of a gathered batch, on the event loop: [N, ...] 0..255 -> a new array, the model input.
InputFn = Callable[[np.ndarray], np.ndarray]
# The model call, on the model thread: [rows, ...] -> two arrays with one row per input row.
ModelFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# Batch-wide steps around it, on the event loop: images -> model rows; (images, *model outputs) -> one row per image.
PrepareFn = Callable[[np.ndarray], np.ndarray]
# The finish step may return more arrays than the model (the guards add refusal codes); each has one row per image.
FinishFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class Runner:
    """A model call and the labels its metrics carry; equal runners may share a batch."""

    fn: ModelFn
    model_version: str
    backend: str
    device: str
    # Optional steps run once per gathered batch on the event loop, not the model thread: they are short numpy
    # code (the guards: 0.3 ms for 21 images) whose dozens of GIL releases would each wait for the busy loop
    # there, which stretched a model call from 3 ms to 12-15 ms under load.
    prepare: PrepareFn | None = None
    finish: FinishFn | None = None
    # Model rows one image becomes in prepare (3 with the guards' squeezed copies): max_batch_size bounds the
    # rows of one model call, so such a runner takes max_batch_size // rows_per_image images a batch.
    rows_per_image: int = 1
    # Pictures, JSON and tensors (0..255) -> the model's input: the version's preprocessing (softened, scaled:
    # ``model_input_step``), once per gathered batch before prepare, into a new array (the callers' stay as they
    # were). finish sees its output. None: the images as they are.
    model_input: InputFn | None = None
