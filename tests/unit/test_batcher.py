"""The dynamic batcher with a fake model: batching, routing, back-pressure, deadlines, failures, dispatch timing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from service.errors import DeadlineExceeded, InferenceError, ModelNotReady, QueueFull
from service.inference.batcher import Batcher
from service.inference.runner import Runner


class FakeModel:
    """Echoes each image's id (pixel [0,0,0]) into both outputs; records batch sizes and the threads it ran on."""

    def __init__(self, delay_s: float = 0.0, fail_when: Callable[[np.ndarray], bool] | None = None) -> None:
        self.delay_s = delay_s
        self.fail_when = fail_when
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.calls.append(images.shape[0])
            self.threads.add(threading.current_thread().name)
            time.sleep(self.delay_s)
            if self.fail_when is not None and self.fail_when(images):
                raise RuntimeError("boom")
            ids = images[:, 0, 0, 0]
            return np.repeat(ids[:, None], 10, axis=1), ids[:, None] * 2
        finally:
            with self._lock:
                self.active -= 1


class GatedModel(FakeModel):
    """A FakeModel whose calls block until ``gate`` opens; ``started`` says a call has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.started.set()
        if not self.gate.wait(5.0):
            raise RuntimeError("the test never opened the gate")
        return super().__call__(images)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.002)


async def submitted(batcher: Batcher, model: FakeModel, image_id: float) -> asyncio.Task[Any]:
    """A submission already in the queue (its task has run up to waiting for the result)."""
    task = asyncio.create_task(batcher.submit(images_with_ids(image_id), deadline(), runner(model)))
    await asyncio.sleep(0)
    return task


def images_with_ids(*ids: float) -> np.ndarray:
    out = np.zeros((len(ids), 28, 28, 1), dtype=np.float32)
    out[:, 0, 0, 0] = ids
    return out


def runner(fn: FakeModel, version: str = "1") -> Runner:
    return Runner(fn, version, "fake", "cpu")


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(make())


async def with_batcher(body: Callable[[Batcher], Awaitable[Any]], **kwargs: Any) -> Any:
    options = {"max_batch_size": 16, "max_batch_delay_ms": 20.0, "max_queue_size": 256, "batching": True}
    batcher = Batcher(**{**options, **kwargs})
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()


def deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_concurrent_submissions_are_batched_and_routed_in_order():
    model = FakeModel(delay_s=0.01)

    async def body(batcher: Batcher) -> list[tuple[np.ndarray, np.ndarray]]:
        jobs = [
            batcher.submit(images_with_ids(i * 10, i * 10 + 1, i * 10 + 2), deadline(), runner(model))
            for i in range(12)
        ]
        return await asyncio.gather(*jobs)

    results = run(lambda: with_batcher(body))
    for i, (probs, features) in enumerate(results):
        assert probs[:, 0].tolist() == [i * 10, i * 10 + 1, i * 10 + 2]
        assert features[:, 0].tolist() == [2 * (i * 10), 2 * (i * 10 + 1), 2 * (i * 10 + 2)]
    assert max(model.calls) > 3, f"no batch gathered more than one request: {model.calls}"
    assert max(model.calls) <= 16 and sum(model.calls) == 36
    assert len(model.threads) == 1 and model.max_active == 1


def test_batching_off_runs_each_request_alone():
    model = FakeModel()

    async def body(batcher: Batcher) -> list[Any]:
        return await asyncio.gather(*(batcher.submit(images_with_ids(i), deadline(), runner(model)) for i in range(8)))

    results = run(lambda: with_batcher(body, batching=False))
    assert model.calls == [1] * 8
    assert [float(p[0, 0]) for p, _ in results] == list(range(8))


def test_full_queue_refuses_at_once():
    model = FakeModel(delay_s=0.2)

    async def body(batcher: Batcher) -> None:
        blocker = asyncio.create_task(batcher.submit(images_with_ids(0), deadline(), runner(model)))
        await asyncio.sleep(0.05)  # the blocker is now running; the queue is empty again
        queued = [asyncio.create_task(batcher.submit(images_with_ids(1, 2, 3), deadline(), runner(model)))]
        await asyncio.sleep(0)
        began = time.monotonic()
        with pytest.raises(QueueFull) as info:
            await batcher.submit(images_with_ids(4, 5), deadline(), runner(model))
        assert time.monotonic() - began < 0.05
        assert info.value.retry_after_s >= 1
        await asyncio.gather(blocker, *queued)

    run(lambda: with_batcher(body, max_queue_size=4))


def test_deadline_exceeded_while_waiting():
    model = FakeModel(delay_s=0.3)

    async def body(batcher: Batcher) -> None:
        slow = asyncio.create_task(batcher.submit(images_with_ids(0), deadline(), runner(model)))
        await asyncio.sleep(0.02)
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(images_with_ids(1), deadline(0.05), runner(model))
        assert time.monotonic() - began < 0.2, "the caller waited past its deadline"
        await slow
        await asyncio.sleep(0.05)
        assert batcher.depth == 0

    run(lambda: with_batcher(body, batching=False))
    assert model.calls == [1], "an expired request still reached the model"


def test_failing_model_call_fails_only_its_batch():
    model = FakeModel(fail_when=lambda images: bool((images[:, 0, 0, 0] == 666).any()))

    async def body(batcher: Batcher) -> list[Any]:
        bad = runner(model, "bad")
        good = runner(model, "good")
        # Different runners never share a batch, so the poisoned one is alone in its call.
        jobs = [batcher.submit(images_with_ids(666), deadline(), bad)]
        jobs += [batcher.submit(images_with_ids(i), deadline(), good) for i in range(5)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(lambda: with_batcher(body))
    assert isinstance(results[0], InferenceError)
    assert [float(r[0][0, 0]) for r in results[1:]] == [0, 1, 2, 3, 4]


def test_a_failed_model_call_is_logged_with_the_request_ids_it_failed(caplog: pytest.LogCaptureFixture) -> None:
    """Each client got inference_failed with its X-Request-ID, and the traceback's line carried no request id."""
    from service.logging_setup import REQUEST_ID

    model = FakeModel(fail_when=lambda images: True)
    broken = runner(model, "broken")

    async def one(batcher: Batcher, request_id: str) -> Any:
        REQUEST_ID.set(request_id)  # what the access middleware does for each request
        return await batcher.submit(images_with_ids(1), deadline(), broken)

    async def body(batcher: Batcher) -> list[Any]:
        return await asyncio.gather(*(one(batcher, f"req-{i}") for i in range(3)), return_exceptions=True)

    with caplog.at_level(logging.ERROR, logger="service.inference.batcher"):
        results = run(lambda: with_batcher(body))
    assert all(isinstance(r, InferenceError) for r in results)
    logged = [rid for r in caplog.records if r.getMessage() == "model call failed" for rid in r.request_ids]
    assert sorted(logged) == ["req-0", "req-1", "req-2"]


def test_oversized_submission_runs_in_max_batch_chunks():
    model = FakeModel()

    async def body(batcher: Batcher) -> tuple[np.ndarray, np.ndarray]:
        return await batcher.submit(images_with_ids(*range(40)), deadline(), runner(model))

    probs, _ = run(lambda: with_batcher(body, max_batch_size=16, max_queue_size=8))
    assert model.calls == [16, 16, 8]
    assert probs[:, 0].tolist() == list(range(40))


def test_batcher_rejects_bad_configuration():
    with pytest.raises(ValueError, match="MNIST_MAX_BATCH_SIZE"):
        Batcher(max_batch_size=0, max_batch_delay_ms=1, max_queue_size=1)


def test_prepare_and_finish_run_once_per_batch_on_the_loop_and_rows_bound_the_model_call():
    """A runner whose images become 3 model rows each: max_batch_size 16 rows -> 5 images a batch."""
    model = FakeModel()
    seen: list[tuple[str, int]] = []

    def prepare(images: np.ndarray) -> np.ndarray:
        seen.append((threading.current_thread().name, len(images)))
        return np.concatenate([images, images, images])

    def finish(images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(images)
        return probs[:n], features[:n] + features[n : 2 * n] + features[2 * n :]

    tripled = Runner(model, "1", "fake", "cpu", prepare, finish, rows_per_image=3)

    async def body(batcher: Batcher) -> list[tuple[np.ndarray, np.ndarray]]:
        return await asyncio.gather(*(batcher.submit(images_with_ids(i), deadline(), tripled) for i in range(7)))

    results = run(lambda: with_batcher(body, max_batch_size=16))
    assert [count for _, count in seen] == [5, 2]
    assert {thread for thread, _ in seen} == {threading.main_thread().name}  # the loop's thread
    assert model.calls == [15, 6] and not any(name == threading.main_thread().name for name in model.threads)
    assert [float(p[0, 0]) for p, _ in results] == list(range(7))
    assert [float(f[0, 0]) for _, f in results] == [6.0 * i for i in range(7)]


def test_lone_request_is_dispatched_without_waiting_the_delay():
    model = FakeModel()

    async def body(batcher: Batcher) -> list[float]:
        took = []
        for i in range(3):
            began = time.monotonic()
            probs, _ = await batcher.submit(images_with_ids(i), deadline(), runner(model))
            took.append(time.monotonic() - began)
            assert float(probs[0, 0]) == i
        return took

    took = run(lambda: with_batcher(body, max_batch_delay_ms=500.0))
    assert max(took) < 0.25, f"an idle model waited for companions: {took}"
    assert model.calls == [1, 1, 1]


def test_arrivals_during_a_call_are_gathered_into_the_next_call_when_the_model_frees():
    model = GatedModel()

    async def body(batcher: Batcher) -> list[Any]:
        try:
            first = await submitted(batcher, model, 0)
            assert await asyncio.to_thread(model.started.wait, 2.0)
            later = [await submitted(batcher, model, i) for i in (1, 2, 3)]
            await asyncio.sleep(0.05)
            assert batcher.depth == 0 and not any(job.done() for job in later)  # gathered, waiting for the model
        finally:
            model.gate.set()
        began = time.monotonic()
        results = await asyncio.gather(first, *later)
        # Far below the 500 ms delay: the gathered batch went to the model as soon as it was free.
        assert time.monotonic() - began < 0.25
        return results

    results = run(lambda: with_batcher(body, max_batch_delay_ms=500.0))
    assert model.calls == [1, 3]
    assert [float(p[0, 0]) for p, _ in results] == [0, 1, 2, 3]


def test_delay_closes_a_batch_behind_a_busy_model_and_only_one_batch_waits_there():
    model = GatedModel()

    async def body(batcher: Batcher) -> list[Any]:
        try:
            jobs = [await submitted(batcher, model, 0)]
            assert await asyncio.to_thread(model.started.wait, 2.0)
            jobs.append(await submitted(batcher, model, 1))
            await until(lambda: batcher.depth == 0)
            await asyncio.sleep(0.1)  # 5x the delay: the batch of 1 is closed and queued behind the running call
            jobs.append(await submitted(batcher, model, 2))
            await asyncio.sleep(0.05)
            assert batcher.depth == 1, "a second batch was queued behind the running call"
        finally:
            model.gate.set()
        return await asyncio.gather(*jobs)

    results = run(lambda: with_batcher(body, max_batch_delay_ms=20.0))
    assert model.calls == [1, 1, 1]
    assert [float(p[0, 0]) for p, _ in results] == [0, 1, 2]


def test_stop_answers_dispatched_calls_and_refuses_the_queue():
    model = GatedModel()

    async def body() -> list[Any]:
        batcher = Batcher(max_batch_size=16, max_batch_delay_ms=0.0, max_queue_size=256)
        await batcher.start()
        try:
            jobs = [await submitted(batcher, model, 0)]
            assert await asyncio.to_thread(model.started.wait, 2.0)
            jobs.append(await submitted(batcher, model, 1))
            await until(lambda: batcher.depth == 0)  # dispatched behind the running call
            jobs.append(await submitted(batcher, model, 2))
            await until(lambda: batcher.depth == 1)
            stopping = asyncio.create_task(batcher.stop())
            await asyncio.sleep(0.02)
        finally:
            model.gate.set()
        await stopping
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(body)
    assert [float(r[0][0, 0]) for r in results[:2]] == [0, 1]
    assert isinstance(results[2], ModelNotReady)
    assert model.calls == [1, 1]


def queue_depth_gauge() -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("mnist_queue_depth")


def test_the_queue_depth_gauge_shows_images_waiting_behind_a_busy_model_and_empties():
    model = GatedModel()

    async def body(batcher: Batcher) -> list[float | None]:
        blocker = asyncio.create_task(batcher.submit(images_with_ids(0), deadline(), runner(model)))
        await until(model.started.is_set)
        waiting = [
            asyncio.create_task(batcher.submit(images_with_ids(i, i), deadline(), runner(model))) for i in (1, 2)
        ]
        await asyncio.sleep(0.01)
        seen = [queue_depth_gauge()]
        model.gate.set()
        await asyncio.gather(blocker, *waiting)
        seen.append(queue_depth_gauge())
        return seen

    # One batch may wait behind the running call (taken out of the queue); without batching none does.
    while_busy, after = run(lambda: with_batcher(body, batching=False))
    assert while_busy == 4 and after == 0


def test_the_runners_input_step_runs_on_each_gathered_batch_and_leaves_the_callers_arrays_alone():
    model = FakeModel(delay_s=0.01)
    seen_by_finish: list[np.ndarray] = []

    def finish(images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen_by_finish.append(images[:, 0, 0, 0].copy())
        return probs, features

    scaled = Runner(model, "1", "fake", "cpu", finish=finish, model_input=lambda images: images * 0.5)
    submissions = [images_with_ids(i) for i in (2.0, 4.0, 6.0)]

    async def body(batcher: Batcher) -> list[tuple[np.ndarray, np.ndarray]]:
        alone = await batcher.submit(submissions[0], deadline(), scaled)  # an idle model: a batch of one
        together = await asyncio.gather(*(batcher.submit(images, deadline(), scaled) for images in submissions[1:]))
        return [alone, *together]

    results = run(lambda: with_batcher(body))
    assert [float(probs[0, 0]) for probs, _ in results] == [1.0, 2.0, 3.0]  # the model saw the scaled pixels
    assert sorted(np.concatenate(seen_by_finish).tolist()) == [1.0, 2.0, 3.0]
    assert [float(images[0, 0, 0, 0]) for images in submissions] == [2.0, 4.0, 6.0]
