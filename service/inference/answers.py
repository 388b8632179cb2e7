"""The model's rows turned into one answer per image: a Prediction, or the guards' refusal."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from digits.guards import NOT_A_DIGIT, REFUSALS
from service.errors import NotADigit, ServiceError, SuspectedAdversarial


class Prediction(NamedTuple):
    """One answered image. A named tuple: one is built per request, at a fraction of a frozen dataclass's cost."""

    digit: int
    confidence: float
    probabilities: list[float]
    model_version: int
    features: np.ndarray | None = None  # the penultimate layer, only when asked for (the OIP ``features`` output)


def answers(
    probs: np.ndarray, refusals: np.ndarray, labels: list[int], version: int, features: np.ndarray | None = None
) -> list[Prediction | ServiceError]:
    """``probs`` [N, classes] and ``refusals`` [N] (codes indexing ``digits.guards.REFUSALS``, 0 = none);
    ``features`` [N, F] when the caller asked for them. A refusal's message leaves out which image it is: only
    the caller knows where the image sat in its request (see ``named``)."""
    out: list[Prediction | ServiceError] = []
    for i, (row, code) in enumerate(zip(probs.tolist(), refusals.tolist(), strict=True)):
        if code:
            out.append(
                NotADigit("does not look like a handwritten digit")
                if REFUSALS[code] == NOT_A_DIGIT
                else SuspectedAdversarial("looks altered to mislead the model")
            )
            continue
        # The first maximum, as argmax; over ten Python floats, cheaper than numpy's call overhead.
        # A NaN (a broken model) makes max() order-dependent: argmax then picks it, and the answer
        # fails as a 500 instead of naming a digit.
        best = row.index(max(row)) if math.isfinite(sum(row)) else int(np.argmax(row))
        out.append(Prediction(labels[best], row[best], row, version, None if features is None else features[i]))
    return out


def named(refusal: ServiceError, subject: str) -> ServiceError:
    """The guards' refusal saying which image it is, as its request numbers them: "image 3", "the image"."""
    return type(refusal)(f"{subject} {refusal.message}")
