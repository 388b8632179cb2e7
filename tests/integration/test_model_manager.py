"""ModelManager on a real tiny model: serve, hot swap under load, refuse a corrupt version, runtimes agree."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry import Registry, layout
from service import metrics
from service.errors import ModelLoadError, ModelNotReady, NotADigit, ServiceError, SuspectedAdversarial
from service.inference.answers import Prediction
from service.inference.model_manager import ModelManager
from service.settings import Settings
from tests.helpers import publish_copy


def settings_for(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"model_dir": root, "poll_interval_s": 0, "max_batch_size": 16, "max_batch_delay_ms": 2.0}
    return Settings(**{**values, **overrides})


def digits(n: int, seed: int = 0) -> np.ndarray:
    """Crude bright strokes on black, 0..255: enough to exercise the pipeline, not to be classified well."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.float32)
    for i in range(n):
        col = int(rng.integers(9, 19))
        images[i, 5:23, col : col + 3] = 255.0
    return images


def serving(root: Path) -> int:
    return Registry(root).resolve(None)


def test_serves_production_and_predicts(registry_copy: Path):
    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        assert not manager.ready
        await manager.start()
        try:
            assert manager.ready and manager.not_ready_reason is None
            answers = await manager.predict(digits(5))
            assert len(answers) == 5
            for answer in answers:
                assert isinstance(answer, Prediction)
                assert answer.model_version == serving(registry_copy)
                assert 0 <= answer.digit <= 9 and abs(sum(answer.probabilities) - 1) < 1e-3
                assert answer.confidence == max(answer.probabilities)
            status = manager.status()
            assert status["model_version"] == serving(registry_copy)
            assert status["device"] == "cpu" and "CPUExecutionProvider" in status["providers"]
            assert status["versions"] and status["last_load_error"] is None
        finally:
            await manager.stop()
        assert not manager.ready
        with pytest.raises(ModelNotReady):
            await manager.predict(digits(1))

    asyncio.run(scenario())


def test_guards_answer_each_image(registry_copy: Path):
    async def scenario() -> list[Prediction | ServiceError]:
        manager = ModelManager(settings_for(registry_copy, guards=True))
        await manager.start()
        try:
            noise = np.random.default_rng(3).random((2, 28, 28), dtype=np.float32) * 255
            return await manager.predict(np.concatenate([digits(3), noise]))
        finally:
            await manager.stop()

    answers = asyncio.run(scenario())
    assert len(answers) == 5
    assert all(isinstance(a, Prediction | NotADigit | SuspectedAdversarial) for a in answers)


def test_hot_swap_under_concurrent_predictions(registry_copy: Path):
    first = serving(registry_copy)
    second = publish_copy(registry_copy, first)
    loads_before = metrics.MODEL_LOADS.labels(str(second))._value.get()

    async def scenario() -> tuple[list[int], list[BaseException]]:
        manager = ModelManager(settings_for(registry_copy, poll_interval_s=0.1))
        await manager.start()
        seen: list[int] = []
        errors: list[BaseException] = []
        swapped = asyncio.Event()

        async def client(seed: int) -> None:
            images = digits(2, seed)
            # Keep predicting for a while after the swap so both versions answer.
            stop_at = None
            while stop_at is None or time.monotonic() < stop_at:
                try:
                    for answer in await manager.predict(images):
                        if isinstance(answer, Prediction):
                            seen.append(answer.model_version)
                except Exception as exc:
                    errors.append(exc)
                if swapped.is_set() and stop_at is None:
                    stop_at = time.monotonic() + 0.3
                await asyncio.sleep(0)

        clients = [asyncio.create_task(client(i)) for i in range(6)]
        await asyncio.sleep(0.2)
        old = manager._current
        await asyncio.to_thread(Registry(registry_copy).promote, second, reason="test hot swap")
        give_up = time.monotonic() + 15
        while manager.status()["model_version"] != second and time.monotonic() < give_up:
            await asyncio.sleep(0.02)
        swapped.set()
        await asyncio.wait_for(asyncio.gather(*clients), 30)
        await asyncio.sleep(0.1)
        assert old is not None and old.inflight == 0
        await manager.stop()
        return seen, errors

    seen, errors = asyncio.run(scenario())
    assert errors == [], f"{len(errors)} predictions failed during the swap: {errors[:3]}"
    assert first in seen and second in seen
    assert seen.index(second) > 0 and seen[-1] == second
    assert metrics.MODEL_LOADS.labels(str(second))._value.get() == loads_before + 1


def test_corrupt_new_version_is_refused_and_old_keeps_serving(registry_copy: Path):
    first = serving(registry_copy)
    registry = Registry(registry_copy)
    failures_before = metrics.MODEL_LOAD_FAILURES.labels("verification")._value.get()

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            assert manager.status()["model_version"] == first
            second = publish_copy(registry_copy, first)
            registry.promote(second, reason="about to be corrupted")
            onnx_file = registry.version_dir(second) / layout.ONNX_FILE
            data = bytearray(onnx_file.read_bytes())
            data[len(data) // 2] ^= 0xFF
            onnx_file.write_bytes(bytes(data))

            assert await manager.poll_once() is None  # what the watcher runs each poll_interval_s
            error = manager.last_load_error
            assert error is not None and error["version"] == second and error["reason"] == "verification"
            assert "checksum" in error["message"] and error["at"]
            assert manager.ready and manager.status()["model_version"] == first
            answers = await manager.predict(digits(2))
            assert all(isinstance(a, Prediction) and a.model_version == first for a in answers)
            assert await manager.poll_once() is None  # nothing changed: no retry storm
            with pytest.raises(ModelLoadError):
                await manager.reload(second)
            assert manager.status()["model_version"] == first
        finally:
            await manager.stop()

    asyncio.run(scenario())
    assert metrics.MODEL_LOAD_FAILURES.labels("verification")._value.get() == failures_before + 2


def test_a_version_copied_into_its_folder_in_place_is_served_once_its_files_are_all_there(registry_copy: Path):
    """A registry filled by cp, rsync or a volume, not through publish: the folder appears before its files. The
    half-copied version is refused once, not retried while nothing changes, and served once the copy is done."""
    registry = Registry(registry_copy)
    first = serving(registry_copy)
    registry.promote(first, reason="the one serving")
    second = publish_copy(registry_copy, first)
    registry.promote(second, reason="the copy to come")
    complete = registry_copy.parent / "complete"
    shutil.move(registry.version_dir(second), complete)
    failures_before = metrics.MODEL_LOAD_FAILURES.labels("verification")._value.get()

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            # Production names a version not there yet: the production before it stands in.
            assert manager.ready and manager.model_version == first
            half = registry_copy / layout.MODEL_NAME / str(second)
            half.mkdir()
            shutil.copy2(complete / layout.METADATA_FILE, half / layout.METADATA_FILE)
            assert await manager.poll_once() is None  # what the watcher runs each poll_interval_s
            assert manager.last_load_error is not None and manager.last_load_error["version"] == second
            assert "missing" in manager.last_load_error["message"]
            assert await manager.poll_once() is None  # nothing changed: no retry
            shutil.copytree(complete, half, dirs_exist_ok=True)
            assert await manager.poll_once() == second
            assert manager.last_load_error is None  # GET /models said it failed after it was served
            answers = await manager.predict(digits(2))
            assert all(isinstance(a, Prediction) and a.model_version == second for a in answers)
        finally:
            await manager.stop()

    asyncio.run(scenario())
    assert metrics.MODEL_LOAD_FAILURES.labels("verification")._value.get() == failures_before + 1


def test_a_registry_mounted_wrong_at_start_is_reported_and_served_once_it_is_fixed(registry_copy: Path):
    """A file where the model folder should be (a volume mounted wrong): the manager says why it is not ready
    and keeps watching, instead of failing its start for good."""
    folder = registry_copy / layout.MODEL_NAME
    good = registry_copy.parent / "good"
    shutil.move(folder, good)
    folder.write_text("not a folder")

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            assert not manager.ready
            assert f"no model version in {folder}" in (manager.not_ready_reason or "")
            folder.unlink()
            shutil.move(good, folder)
            assert await manager.poll_once() == serving(registry_copy)  # what the watcher runs each poll
            assert manager.ready
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_registry_it_may_not_read_is_an_io_refusal_retried_when_it_changes(
    registry_copy: Path, monkeypatch: pytest.MonkeyPatch
):
    """A folder the service's user may not list (a volume's wrong group): the system's reason, once, then served
    when the folder can be read. Tests run as root, who may read anything: the refusal is the registry's."""
    denied = PermissionError(13, "Permission denied", str(registry_copy / layout.MODEL_NAME))
    readable = {name: getattr(Registry, name) for name in ("versions", "aliases", "history")}

    def refuse(self: Registry) -> Any:
        raise denied

    for name in readable:
        monkeypatch.setattr(Registry, name, refuse)

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            assert not manager.ready
            assert "the registry cannot be read: [Errno 13] Permission denied" in (manager.not_ready_reason or "")
            assert manager.last_load_error is not None and manager.last_load_error["reason"] == "io"
            assert await manager.poll_once() is None  # still refused, nothing changed: no second failure
            for name, method in readable.items():
                monkeypatch.setattr(Registry, name, method)
            assert await manager.poll_once() == serving(registry_copy)
        finally:
            await manager.stop()

    failures_before = metrics.MODEL_LOAD_FAILURES.labels("io")._value.get()
    asyncio.run(scenario())
    assert metrics.MODEL_LOAD_FAILURES.labels("io")._value.get() == failures_before + 1


def test_a_worker_starting_while_production_is_refused_serves_the_production_before_it(registry_copy: Path):
    """Replicas already running keep their version when production moves to one they refuse; one starting then
    (a restart, a scale-up) serves the same earlier production, not 503, and takes production once it loads."""
    registry = Registry(registry_copy)
    first = serving(registry_copy)
    registry.promote(first, reason="the good one")
    second = publish_copy(registry_copy, first)
    registry.promote(second, reason="published good, damaged since")
    onnx = registry.version_dir(second) / layout.ONNX_FILE
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    unpromoted = publish_copy(registry_copy, first)  # newer, never production: never a stand-in

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            assert manager.ready and manager.model_version == first != unpromoted
            assert manager.last_load_error is not None and manager.last_load_error["version"] == second
            assert await manager.poll_once() is None  # nothing changed: production's version is not tried again
            onnx.write_bytes(good)
            assert await manager.poll_once() == second
            assert manager.last_load_error is None
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_version_rolled_back_from_never_stands_in(registry_copy: Path):
    """Production went to a second version and was rolled back; its own version refused now, a starting worker does
    not take the one the operator rolled back from."""
    registry = Registry(registry_copy)
    first = serving(registry_copy)
    registry.promote(first, reason="the good one")
    second = publish_copy(registry_copy, first)
    registry.promote(second, reason="tried")
    assert registry.rollback() == first
    onnx = registry.version_dir(first) / layout.ONNX_FILE
    onnx.write_bytes(onnx.read_bytes()[:-1])

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            assert not manager.ready and manager.model_version is None
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_promotion_made_before_a_refused_reload_is_still_followed(registry_copy: Path):
    """Production moved between two polls, then an admin asked this replica for a version it refuses: the next poll
    still finds production's move."""
    registry = Registry(registry_copy)
    first = serving(registry_copy)
    registry.promote(first, reason="serving")
    damaged = publish_copy(registry_copy, first, onnx=b"not an onnx model")
    newer = publish_copy(registry_copy, first)

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            registry.promote(newer, reason="by the training job")
            with pytest.raises(ModelLoadError):
                await manager.reload(damaged)  # POST /admin/reload {"version": damaged}
            assert await manager.poll_once() == newer
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_promoted_version_whose_folder_is_gone_is_never_replaced_by_an_unpromoted_one(registry_copy: Path):
    """Only a set alias is followed: the newest version stands in only while production is unset."""
    registry = Registry(registry_copy)
    first = serving(registry_copy)
    registry.promote(first, reason="the one people approved")

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            publish_copy(registry_copy, first)  # newer, never promoted
            shutil.rmtree(registry.version_dir(first))
            await manager.poll_once()  # what the watcher runs each poll_interval_s
            assert manager.status()["model_version"] == first  # still in memory, still what production names
        finally:
            await manager.stop()
        restarted = ModelManager(settings_for(registry_copy, guards=False))
        await restarted.start()
        try:
            assert not restarted.ready
            assert f"model version {first} does not exist" in (restarted.not_ready_reason or "")
        finally:
            await restarted.stop()

    asyncio.run(scenario())


def test_onnx_and_savedmodel_agree(registry_copy: Path):
    pytest.importorskip("tensorflow")
    from service.inference.backends import load_backend

    registry = Registry(registry_copy)
    version = serving(registry_copy)
    meta = registry.verify(version)
    folder = registry.version_dir(version)
    scale = float(meta["preprocessing"]["pixel_scale"])
    rng = np.random.default_rng(7)
    images = np.concatenate([digits(8), rng.random((8, 28, 28), dtype=np.float32) * 255])
    batch = (images * np.float32(scale)).reshape(-1, 28, 28, 1).astype(np.float32)
    kwargs = {"device": "cpu", "intra_op_threads": 1, "inter_op_threads": 1}
    onnx_backend = load_backend("onnx", folder, meta, **kwargs)
    saved_backend = load_backend("savedmodel", folder, meta, **kwargs)
    try:
        onnx_probs, onnx_features = onnx_backend.run(batch)
        saved_probs, saved_features = saved_backend.run(batch)
    finally:
        onnx_backend.close()
        saved_backend.close()
    assert np.max(np.abs(onnx_probs - saved_probs)) <= 1e-4
    assert np.allclose(onnx_features, saved_features, rtol=1e-4, atol=1e-4)


def test_a_model_that_outputs_nan_never_names_a_confident_digit(registry_copy: Path):
    """A broken model's NaN must reach the answer (and fail it as a 500), not be skipped over."""
    import dataclasses

    from service.api.routes_predict import prediction_answer
    from service.errors import InferenceError

    async def scenario() -> None:
        manager = ModelManager(settings_for(registry_copy, guards=False))
        await manager.start()
        try:
            model = manager._current
            assert model is not None

            def broken(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                probs, features = model.backend.run(rows)
                probs = probs.copy()
                probs[:, 1] = np.nan  # before the true maximum: max() over the list would skip it
                return probs, features

            model.runner = dataclasses.replace(model.runner, fn=broken)
            (answer,) = await manager.predict(digits(1))
            assert isinstance(answer, Prediction) and np.isnan(answer.confidence)
            for settings in (Settings(return_probabilities=True), Settings(return_probabilities=False)):
                with pytest.raises(InferenceError, match="non-finite"):
                    prediction_answer(answer, settings)
        finally:
            await manager.stop()

    asyncio.run(scenario())
