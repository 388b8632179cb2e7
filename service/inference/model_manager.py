"""The served model: start, predict, watch the registry, hot swap, report.

A new version is loaded beside the old one, verified and warmed up, then swapped
in with one reference assignment; the old one is closed once the requests that
hold it have finished. A version that fails any step is refused and the old one
keeps serving. No HTTP here: ``service/api`` calls this interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from registry import InvalidVersion, ModelMetadata, Preprocessing, Registry, RegistryError, VersionNotFound, layout
from registry import aliases as alias_file
from registry.files import folder_state
from service import metrics
from service.errors import DeviceUnavailable, InvalidInput, ModelLoadError, ModelNotReady, ServiceError
from service.inference import report
from service.inference.answers import Prediction, answers
from service.inference.batcher import Batcher
from service.inference.loaded_model import LoadedModel, VersionRefused, check_loads, load_version, refusal_reason
from service.settings import Settings

log = logging.getLogger(__name__)

FALLBACKS = 3  # earlier production versions a worker starting tries when production's own is refused


class ModelManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings.model_dir)
        self._batcher = Batcher(**{name: getattr(settings, name) for name in (*report.BATCH_SETTINGS, "batching")})
        self._current: LoadedModel | None = None
        self._lock = asyncio.Lock()  # one load at a time (watcher and admin reload)
        self._watcher: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._fingerprint: tuple[Any, ...] | None = None
        self._stopping = False
        self._reason: str | None = "starting: no model version loaded yet"
        self.last_load_error: dict[str, Any] | None = None

    # ---- lifecycle -------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._current is not None and self._batcher.running and not self._stopping

    @property
    def model_version(self) -> int | None:
        """The version being served, without touching the disk."""
        return self._current.version if self._current is not None else None

    def _served(self) -> LoadedModel:
        if self._current is None:
            raise ModelNotReady(self.not_ready_reason or "no model version loaded")
        return self._current

    @property
    def preprocessing(self) -> Preprocessing:
        """How pictures become the served version's input (canvas, digit box), from its metadata."""
        return self._served().preprocessing

    @property
    def served_facts(self) -> ModelMetadata:
        """The served version's metadata.json, typed: its tensors are what the Open Inference Protocol describes."""
        return self._served().facts

    @property
    def served_backend(self) -> str:
        return self._current.backend.name if self._current is not None else self.settings.backend

    @property
    def not_ready_reason(self) -> str | None:
        if self.ready:
            return None
        if self._stopping:
            return "shutting down"
        return self._reason or "the batcher is not running"

    async def start(self, *, stand_in: bool = True) -> None:
        """Load the configured version and start batching and watching. Raises only on configuration errors
        (DeviceUnavailable). A version refused leaves the manager not ready, or serving an earlier production with
        ``stand_in`` (_serve_an_earlier_production), and the watcher retries whenever the registry changes."""
        self._stopping = False
        await self._batcher.start()
        self._fingerprint = await asyncio.to_thread(self._registry_fingerprint)
        try:
            await self._load_and_swap(None)
        except DeviceUnavailable:
            await self._batcher.stop()
            raise
        except (ModelLoadError, RegistryError):  # recorded in last_load_error and not_ready_reason
            if stand_in:
                await self._serve_an_earlier_production()
        except Exception:
            # Whatever broke the first load, the watcher must still run to pick up a fixed registry.
            log.exception("unexpected error loading the first model version")
        if self.settings.poll_interval_s > 0:
            self._watcher = asyncio.create_task(self._watch(), name="mnist-registry-watcher")

    async def _serve_an_earlier_production(self) -> None:
        """Production names a version refused here: serve the first that loads of those rollbacks would take it back
        to, as the replicas already running keep theirs, until the registry changes; never one it never named."""
        refused = self.last_load_error
        if self.settings.model_ref.strip() != layout.PRODUCTION or refused is None:
            return
        with contextlib.suppress(RegistryError, OSError):
            history = await asyncio.to_thread(self.registry.history)
            # Where rollbacks would take production, newest first: never a version rolled back from on purpose.
            earlier = [v for v in alias_file.earlier_versions(history, layout.PRODUCTION) if v != refused["version"]]
            for version in earlier[:FALLBACKS]:
                with contextlib.suppress(ModelLoadError, RegistryError):
                    await self._load_and_swap(version)
                    log.warning("serving an earlier production version", extra={"model_version": version})
                    break
        self.last_load_error = refused  # the refusal that matters is production's, whatever a fallback met
        if self._fingerprint is not None:
            self._fingerprint = (self._fingerprint[0], self._refused_files())

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._batcher.stop()
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        current, self._current = self._current, None
        if current is not None:
            current.backend.close()
            metrics.MODEL_INFO.labels(*self._info_labels(current)).set(0)

    # ---- inference -------------------------------------------------------------
    async def predict(self, images: np.ndarray, *, features: bool = False) -> list[Prediction | ServiceError]:
        """One answer per image ([N, 28, 28] float32, 0..255 MNIST convention), in order; each answer
        carries the image's features (the penultimate layer) when ``features`` is true.

        Guard refusals come back as NotADigit / SuspectedAdversarial items; QueueFull,
        DeadlineExceeded, ModelNotReady and InferenceError are raised for the whole call.
        """
        model = self._current
        if model is None or not self.ready:
            raise ModelNotReady(self.not_ready_reason or "no model version loaded")
        images = np.asarray(images, dtype=np.float32)
        n = int(images.shape[0]) if images.ndim else 0
        if n == 0 or images[0].size != math.prod(model.input_shape):  # math.prod: np.prod costs µs per call
            raise InvalidInput(f"expected one or more images of {model.input_shape[:2]} pixels, got {images.shape}")
        deadline = time.monotonic() + self.settings.request_timeout_s
        model.inflight += 1
        try:
            # Scaling and the guards run once per gathered batch inside the batcher (the model's Runner).
            outputs = await self._batcher.submit(images.reshape(n, *model.input_shape), deadline, model.runner)
        finally:
            model.inflight -= 1
        probs, refusals, *rest = outputs
        return answers(probs, refusals, model.labels, model.version, rest[0] if features and rest else None)

    # ---- loading and hot swap ----------------------------------------------------
    async def reload(self, ref: str | int | None = None) -> int:
        """Serve ``ref`` (alias or number; None = MNIST_MODEL_REF, production falling back to the newest) now; one
        already served is kept. ModelLoadError when it is refused (the old one keeps serving), DeviceUnavailable
        when the configured device cannot be used."""
        return await self._load_and_swap(ref)

    async def check_loads(self, version: int) -> None:
        """Load ``version`` as serving would and let it go, nothing swapped (what an admin promotion asks first)."""
        await asyncio.to_thread(check_loads, self.registry, version, self.settings)

    async def poll_once(self) -> int | None:
        """Swap to the watched alias's version if the registry changed; the version swapped in, else None.

        The refused version's own files count too: one copied into its folder in place moves no alias."""
        fingerprint = await asyncio.to_thread(self._registry_fingerprint)
        if fingerprint == self._fingerprint:
            return None
        self._fingerprint = fingerprint
        pinned = self._parse_ref(self.settings.model_ref)
        if isinstance(pinned, int) and self.ready:
            return None
        try:
            return await self._load_and_swap(None)
        except (ModelLoadError, RegistryError, DeviceUnavailable):
            return None  # recorded and logged; the old version keeps serving

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("registry watcher error; will retry")

    async def _load_and_swap(self, ref: str | int | None) -> int:
        async with self._lock:
            version: int | None = None
            try:
                version = await asyncio.to_thread(self._resolve, ref)
                current = self._current
                if current is not None and current.version == version:
                    return version
                new = await asyncio.to_thread(load_version, self.registry, version, self.settings)
            except (ModelLoadError, RegistryError, DeviceUnavailable) as exc:
                if ref is not None and isinstance(exc, VersionNotFound | InvalidVersion):
                    raise  # an explicit request for a version that is not there: 404/422, not a load failure
                self._record_failure(version, exc)
                if isinstance(exc, RegistryError):
                    raise VersionRefused(refusal_reason(exc), str(exc)) from exc
                raise
            old, self._current = self._current, new  # the swap: new requests take `new` from here on
            self._reason = None
            if self.last_load_error is not None and self.last_load_error["version"] == new.version:
                self.last_load_error = None  # refused before, served now: GET /models no longer says it fails
            metrics.MODEL_LOADS.labels(str(new.version)).inc()
            if old is not None:
                metrics.MODEL_INFO.labels(*self._info_labels(old)).set(0)
                task = asyncio.create_task(self._retire(old), name=f"mnist-retire-{old.version}")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            metrics.MODEL_INFO.labels(*self._info_labels(new)).set(1)
            previous = old.version if old else None
            log.info("serving model version", extra={"model_version": new.version, "previous": previous})
            return new.version

    async def _retire(self, old: LoadedModel) -> None:
        # Requests that took the old model before the swap finish on it; the deadline bounds the wait.
        give_up = time.monotonic() + self.settings.request_timeout_s + 1.0
        while old.inflight > 0 and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        try:
            # Closing on the model thread orders it after any batch still running on the old model.
            await self._batcher.call_on_model_thread(old.backend.close)
        finally:
            # Cancelled by stop(), which has already drained the model thread; close() is idempotent.
            old.backend.close()

    def _record_failure(self, version: int | None, exc: Exception) -> None:
        reason = refusal_reason(exc)
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_load_error = {"version": version, "reason": reason, "message": message, "at": at}
        if self._current is None:
            self._reason = f"no model version loaded: {message}"
        if self._fingerprint is not None:  # the refused files as they are now: the watcher retries when they change
            self._fingerprint = (self._fingerprint[0], self._refused_files())
        metrics.MODEL_LOAD_FAILURES.labels(reason).inc()
        log.error("model version refused", extra={"model_version": version, "reason": reason, "detail": message})

    @staticmethod
    def _parse_ref(ref: str | int | None) -> str | int | None:
        if isinstance(ref, str) and ref.strip().isdigit():
            return int(ref.strip())
        return ref

    def _resolve(self, ref: str | int | None) -> int:
        target = self._parse_ref(self.settings.model_ref if ref is None else ref)
        try:
            # "production" falls back to the newest version when the alias is unset (Registry.resolve(None)).
            return self.registry.resolve(None if target == layout.PRODUCTION else target)
        except OSError as exc:  # a folder it may not read, a file where the folder should be: fixable, retried
            raise VersionRefused("io", f"the registry cannot be read: {exc}") from exc

    def _registry_fingerprint(self) -> tuple[Any, ...]:
        try:
            return ((self.registry.change_token(), tuple(self.registry.versions())), self._refused_files())
        except OSError as exc:  # unreadable: the error is the state, so the watcher tries again once it changes
            return (type(exc).__name__, exc.errno), ()  # the shape _record_failure keeps: one failure, not one a poll

    def _refused_files(self) -> tuple[Any, ...]:
        refused = self.last_load_error["version"] if self.last_load_error else None
        return folder_state(self.registry.model_dir / str(refused)) if refused is not None else ()

    @staticmethod
    def _info_labels(model: LoadedModel) -> tuple[str, str, str]:
        return str(model.version), model.backend.name, model.backend.device

    # ---- reporting ---------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        """The version being served, None before the first load."""
        return self._current

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    def status(self) -> dict[str, Any]:
        """What GET /models shows (service.inference.report); it reads the registry from disk."""
        return report.status(self)
