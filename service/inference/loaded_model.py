"""Verify, load and warm up one model version; the manager swaps these whole.

Everything the service needs to know about a version (input name and shape,
scaling, canvas and digit box, output names, labels, guard thresholds) comes from
its ``metadata.json`` (read through ``registry.ModelMetadata``) and ``guards.json``;
nothing here is specific to a model.
Loading is blocking (checksums, session build) and runs off the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from digits.guards import VIEWS, Guards
from digits.softening import model_input
from registry import (
    AliasError,
    CorruptVersion,
    InvalidMetadata,
    ModelMetadata,
    Preprocessing,
    Registry,
    RegistryError,
    layout,
)
from service.errors import DeviceUnavailable, ModelLoadError
from service.inference.backends import Backend, load_backend
from service.inference.runner import FinishFn, InputFn, PrepareFn, Runner
from service.settings import Settings

log = logging.getLogger(__name__)


class VersionRefused(ModelLoadError):
    """A version failed a load stage; ``reason`` is a fixed metric label, never request data."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal_reason(exc: Exception) -> str:
    """The fixed label of a version refused with ``exc``: its load stage's, or what the registry said."""
    if isinstance(exc, VersionRefused):
        return exc.reason
    if isinstance(exc, AliasError):
        return "aliases"  # aliases.json unreadable or malformed: no version is missing, and fixing the file is the cure
    if isinstance(exc, RegistryError):
        return "not_found"
    return "device" if isinstance(exc, DeviceUnavailable) else "load"


@dataclass(eq=False)
class LoadedModel:
    version: int
    metadata: dict[str, Any]  # metadata.json as JSON, for display; the facts are in ``facts``
    backend: Backend
    guards: Guards | None
    runner: Runner  # carries the version's preprocessing too (softening, pixel_scale)
    input_shape: tuple[int, ...]  # one image, e.g. (28, 28, 1)
    labels: list[int]
    facts: ModelMetadata  # metadata.json, typed and checked
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    inflight: int = 0  # predict() calls holding this model; the manager closes it only at zero

    @property
    def preprocessing(self) -> Preprocessing:
        """How pictures become this model's input: canvas, digit_box, softening, pixel_scale (see registry.metadata)."""
        return self.facts.preprocessing


def load_version(registry: Registry, version: int, settings: Settings) -> LoadedModel:
    """Checksum every file, load the backend and guards, and warm up; raise VersionRefused on any failure.

    DeviceUnavailable passes through unchanged: it is a configuration error, not a bad version.
    """
    began = time.perf_counter()
    try:
        facts = registry.model_metadata(version)
        folder = registry.version_dir(version)
    except InvalidMetadata as exc:
        raise VersionRefused("metadata", f"version {version}: {exc} (see models/README.md)") from exc
    except CorruptVersion as exc:
        raise VersionRefused("verification", str(exc)) from exc
    except RegistryError as exc:
        raise VersionRefused("not_found", str(exc)) from exc
    except OSError as exc:
        raise VersionRefused("io", f"version {version}: cannot read its files: {exc!s}") from exc
    meta = facts.to_dict()
    shape, labels = facts.input.image_shape, list(facts.labels)

    guards = None
    if settings.guards:
        try:
            guards = Guards(registry.read_json_file(version, layout.GUARDS_FILE))
        except (RegistryError, KeyError, TypeError, ValueError) as exc:
            raise VersionRefused("guards", f"version {version}: unusable {layout.GUARDS_FILE}: {exc!s}") from exc

    backend = _backend(version, folder, meta, settings)
    prepare, finish = guard_steps(guards)
    views = VIEWS if guards is not None else 1
    to_input = model_input_step(facts.preprocessing)
    runner = Runner(backend.run, str(version), backend.name, backend.device, prepare, finish, views, to_input)
    model = LoadedModel(version, meta, backend, guards, runner, shape, labels, facts)
    try:
        warm_up(model, settings.max_batch_size)
    except Exception as exc:
        backend.close()
        raise VersionRefused("warmup", f"version {version}: warm-up inference failed: {str(exc)[:300]}") from exc
    log.info(
        "model version loaded",
        extra={
            "model_version": version,
            "backend": backend.name,
            "device": backend.device,
            "seconds": round(time.perf_counter() - began, 3),
        },
    )
    return model


def check_loads(registry: Registry, version: int, settings: Settings) -> None:
    """Load ``version`` as serving would, warm it up and let it go (what an admin promotion asks first); raises as
    ``load_version`` does."""
    load_version(registry, version, settings).backend.close()


def _backend(version: int, folder: Path, meta: dict[str, Any], settings: Settings) -> Backend:
    """The runtime for a checked version; its own error types become VersionRefused("load")."""
    try:
        return load_backend(
            settings.backend,
            folder,
            meta,
            device=settings.device,
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            max_batch_rows=settings.max_batch_size,
        )
    except (DeviceUnavailable, VersionRefused):
        raise
    except ModelLoadError as exc:
        raise VersionRefused("load", f"version {version}: {exc.message}") from exc
    except Exception as exc:  # a runtime's own error types; the message says which
        raise VersionRefused("load", f"version {version}: {type(exc).__name__}: {str(exc)[:300]}") from exc


def model_input_step(preprocessing: Preprocessing) -> InputFn:
    """The version's preprocessing of a gathered batch ([N, H, W, 1] in 0..255): every image softened as its
    training digits were (``preprocessing.softening``), then scaled (``pixel_scale``)."""
    sigma, scale = preprocessing.softening, preprocessing.pixel_scale

    def to_model_input(images: np.ndarray) -> np.ndarray:
        return model_input(images.reshape(images.shape[:3]), sigma, scale).reshape(images.shape)

    return to_model_input


def guard_steps(guards: Guards | None) -> tuple[PrepareFn | None, FinishFn]:
    """The batch-wide steps around the model call (see Runner): the guards' squeezed copies before it,
    their verdicts after it. The finish step turns the model's (probabilities, features) on the rows into
    (probabilities [N, C], refusal codes [N] int8 indexing guards.REFUSALS, features [N, F]) for the N images:
    the features travel on for the Open Inference Protocol's ``features`` output."""
    if guards is None:

        def answer_all(images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, ...]:
            return probs, np.zeros(len(probs), dtype=np.int8), features

        return None, answer_all

    def judge(images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, ...]:
        probs, codes, _ = guards.refusal_codes(images, probs, features)
        return probs, codes, features[: len(images)]  # the inputs' rows; the rest are the guards' copies

    return guards.expand, judge


def warm_up(model: LoadedModel, max_batch_size: int) -> None:
    """Run the shapes serving will use, and check the outputs fit the metadata and guards."""
    rng = np.random.default_rng(0)
    sizes = sorted({1, min(3, max_batch_size), max_batch_size})
    for n in sizes:
        # The backend at the row counts serving makes, then the guard steps at the image counts that fill them.
        images = rng.random((n, *model.input_shape), dtype=np.float32)
        probs, features = model.backend.run(images)
        if probs.shape != (n, len(model.labels)) or features.ndim != 2 or features.shape[0] != n:
            raise ValueError(
                f"outputs {probs.shape}/{features.shape} do not fit {n} images and {len(model.labels)} labels"
            )
        if not (np.isfinite(probs).all() and np.isfinite(features).all()):
            raise ValueError("the model returned non-finite values")
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("probabilities do not sum to 1; is the output a softmax?")
        if model.guards is not None and model.guards.means.shape != (len(model.labels), features.shape[1]):
            raise ValueError(f"guards class_means {model.guards.means.shape} do not fit features {features.shape}")
        runner = model.runner
        served = images[: max(1, n // runner.rows_per_image)]
        rows = runner.prepare(served) if runner.prepare is not None else served
        if runner.finish is not None:
            probs, refusals, *_ = runner.finish(served, *runner.fn(rows))
            if probs.shape != (len(served), len(model.labels)) or refusals.shape != (len(served),):
                raise ValueError(f"the guard steps returned {probs.shape}/{refusals.shape} for {len(served)} images")
