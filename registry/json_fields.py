"""One JSON object of ``metadata.json`` read field by field: each refusal an ``InvalidMetadata`` naming the field's path
(``metadata.json: preprocessing.canvas must be a positive integer, got 0``)."""

from __future__ import annotations

import math
from typing import Any

from registry.errors import InvalidMetadata

Shape = tuple[int | None, ...]  # None: a free dimension (the batch)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_ABSENT = object()


class Fields:
    """One JSON object of metadata.json, read field by field; every refusal names the field's path."""

    def __init__(self, obj: object, path: str) -> None:
        if not isinstance(obj, dict):
            raise InvalidMetadata(f"metadata.json: {path or 'the document'} must be a JSON object, got {_shown(obj)}")
        self.obj: dict[str, Any] = obj
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def bad(self, key: str, expected: str) -> InvalidMetadata:
        return InvalidMetadata(f"metadata.json: {self.name(key)} must be {expected}, got {_shown(self.obj[key])}")

    def value(self, key: str, *, optional: bool = False) -> Any:
        if key in self.obj:
            return self.obj[key]
        if optional:
            return _ABSENT
        raise InvalidMetadata(f"metadata.json: {self.name(key)} is missing")

    def object(self, key: str) -> Fields:
        return Fields(self.value(key), self.name(key))

    def section(self, key: str) -> dict[str, Any]:
        """A report section: any JSON object, empty when absent."""
        value = self.value(key, optional=True)
        if value is _ABSENT:
            return {}
        if not isinstance(value, dict):
            raise self.bad(key, "a JSON object")
        return value

    def text(self, key: str, *, optional: bool = False, choices: tuple[str, ...] = ()) -> str | None:
        value = self.value(key, optional=optional)
        if value is _ABSENT or (optional and value is None):
            return None
        if not isinstance(value, str) or not value:
            raise self.bad(key, "a non-empty string")
        if choices and value not in choices:
            raise self.bad(key, " or ".join(repr(c) for c in choices))
        return value

    def integer(self, key: str, *, optional: bool = False) -> int | None:
        value = self.value(key, optional=optional)
        if value is _ABSENT or (optional and value is None):
            return None
        if not is_int(value) or value < 1:
            raise self.bad(key, "a positive integer")
        return value

    def positive_number(self, key: str) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise self.bad(key, "a positive finite number")
        return float(value)

    def number(self, key: str, low: float, high: float, *, default: float) -> float:
        value = self.value(key, optional=True)
        if value is _ABSENT:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.bad(key, f"a number from {low:g} to {high:g}")
        return float(value)

    def shape(self, key: str, *, optional: bool = False) -> Shape | None:
        value = self.value(key, optional=optional)
        if value is _ABSENT:
            return None
        if not isinstance(value, list) or not value or not all(d is None or (is_int(d) and d > 0) for d in value):
            raise self.bad(key, "a list of positive integers (null for the batch dimension)")
        return tuple(value)
