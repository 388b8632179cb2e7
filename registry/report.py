"""Typed views of two report sections of ``metadata.json``: how a version was trained, and how it scored; and
``VersionInfo``, one version's row in the registry's listing.

``training_config`` holds every flag of the run as written; ``Recipe`` reads the ones the model card and the
comparisons rely on, checked, and gives a version registered before a field existed the value it was in fact
trained with (every version before issue #15 used Adam with a cosine decay, no early stopping, no smoothing).
A field that is present but malformed is refused by name, like every other field of the schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from registry.errors import InvalidMetadata


@dataclass(frozen=True)
class Recipe:
    model: str | None = None
    optimizer: str = "adam"
    learning_rate: float | None = None
    momentum: float = 0.0
    nesterov: bool = False
    lr_schedule: str = "cosine"
    early_stopping: int | None = None  # patience in epochs; None: trained for all its epochs
    label_smoothing: float = 0.0
    ema: bool = False  # the kept weights are a moving average of the steps' (--ema)
    epochs: int | None = None
    batch_size: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Recipe:
        read = _Reader(config, "training_config")
        default = cls()
        return cls(
            model=read.text("model", default.model),
            optimizer=read.text("optimizer", default.optimizer) or default.optimizer,
            learning_rate=read.number("learning_rate", default.learning_rate, low=0.0, low_open=True),
            momentum=read.number("momentum", default.momentum, low=0.0, high=1.0) or 0.0,
            nesterov=read.flag("nesterov", default.nesterov),
            lr_schedule=read.text("lr_schedule", default.lr_schedule) or default.lr_schedule,
            early_stopping=read.count("early_stopping", default.early_stopping),
            label_smoothing=read.number("label_smoothing", default.label_smoothing, low=0.0, high=1.0) or 0.0,
            ema=read.flag("ema", default.ema),
            epochs=read.count("epochs", default.epochs),
            batch_size=read.count("batch_size", default.batch_size),
        )

    def summary(self) -> str:
        """One line for the model card and the run's log: 'mlp, sgd lr 0.01 momentum 0.9 (Nesterov), ...'."""
        rate = "" if self.learning_rate is None else f" lr {self.learning_rate:g}"
        parts = [f"{self.model or '?'}, {self.optimizer}{rate}"]
        if self.momentum:
            parts[0] += f" momentum {self.momentum:g}{' (Nesterov)' if self.nesterov else ''}"
        parts.append(f"{self.lr_schedule} learning rate")
        if self.epochs is not None:
            parts.append(f"{self.epochs} epochs" + (f" of batch {self.batch_size}" if self.batch_size else ""))
        if self.early_stopping is not None:
            parts.append(f"early stopping after {self.early_stopping} without a lower validation loss")
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if self.ema:
            parts.append("moving average of the weights")
        return ", ".join(parts)


@dataclass(frozen=True)
class Evaluation:
    test_accuracy: float | None = None
    test_loss: float | None = None  # mean cross-entropy on the test digits; absent before issue #15
    # The figures are on digits softened and scaled as the service serves them; absent (false) before training
    # scored so, when they were on the digits unsoftened (a version's own card says which).
    scored_as_served: bool = False

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> Evaluation:
        read = _Reader(metrics, "metrics")
        return cls(
            test_accuracy=read.number("test_accuracy", None, low=0.0, high=1.0, high_open=False),
            test_loss=read.number("test_loss", None, low=0.0),
            scored_as_served=read.flag("scored_as_served", False),
        )


def check_report(training_config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Refuse a malformed typed field of the two sections (InvalidMetadata names it)."""
    Recipe.from_config(training_config)
    Evaluation.from_metrics(metrics)


class _Reader:
    """Optional fields of one section: absent or null gives the default, a wrong type names the field."""

    def __init__(self, section: dict[str, Any], path: str) -> None:
        self.section = section
        self.path = path

    def _bad(self, key: str, expected: str) -> InvalidMetadata:
        shown = repr(self.section[key])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return InvalidMetadata(f"metadata.json: {self.path}.{key} must be {expected}, got {shown}")

    def text(self, key: str, default: str | None) -> str | None:
        value = self.section.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.section.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def count(self, key: str, default: int | None) -> int | None:
        value = self.section.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._bad(key, "a positive integer")
        return value

    def number(
        self,
        key: str,
        default: float | None,
        *,
        low: float,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = True,
    ) -> float | None:
        value = self.section.get(key)
        if value is None:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise self._bad(key, f"a number in {lo}{low:g}, {high:g}{hi}")
        return float(value)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created: str
    model: str
    test_accuracy: float | None
    aliases: list[str] = field(default_factory=list)
    scored_as_served: bool = False  # test_accuracy on digits as served (registry.report.Evaluation)

    @property
    def accuracy_unsoftened(self) -> bool:
        """Whether its accuracy was recorded on the digits unsoftened, before versions were scored as served."""
        return self.test_accuracy is not None and not self.scored_as_served
