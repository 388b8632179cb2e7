"""Dynamic batching: gather concurrent requests into one model call.

Callers ``await submit(images, deadline, runner)``. One background task takes
queued submissions in order until ``max_batch_size`` images or
``max_batch_delay_ms`` after the first, runs the batch on a single dedicated
thread (so the event loop stays free and the model is never called
concurrently) and hands each caller its own rows back. A runner may add short
batch-wide steps before and after the model call (the guards); those run on
the loop, once per batch.

The batcher knows nothing about model versions: each submission names the
``Runner`` it must run on and a batch never mixes runners, so a hot swap only
changes what new submissions name while queued and running work finishes on
the model it was prepared for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import metrics
from service.errors import DeadlineExceeded, InferenceError, ModelNotReady, QueueFull

log = logging.getLogger(__name__)

# The model call, on the model thread: [rows, ...] -> two arrays with one row per input row.
ModelFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# Batch-wide steps around it, on the event loop: images -> model rows; (images, *model outputs) -> one row per image.
PrepareFn = Callable[[np.ndarray], np.ndarray]
FinishFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


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


@dataclass(eq=False)
class _Item:
    images: np.ndarray
    deadline: float  # time.monotonic() seconds
    runner: Runner
    future: asyncio.Future[tuple[np.ndarray, np.ndarray]]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


class Batcher:
    def __init__(
        self,
        *,
        max_batch_size: int,
        max_batch_delay_ms: float,
        max_queue_size: int,
        batching: bool = True,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_batch_delay_ms < 0:
            raise ValueError(
                "max_batch_size and max_queue_size must be >= 1 and max_batch_delay_ms >= 0 "
                "(MNIST_MAX_BATCH_SIZE, MNIST_MAX_QUEUE_SIZE, MNIST_MAX_BATCH_DELAY_MS)"
            )
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        self.max_queue_size = max_queue_size
        self.batching = batching
        self._queue: deque[_Item] = deque()
        self._depth = 0  # images queued, not yet taken into a batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        # One thread: onnxruntime sessions are thread-safe, but a SavedModel or a future backend need not be.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnist-model")
        self._task = asyncio.create_task(self._loop(), name="mnist-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            item = self._take()
            if not item.future.done():
                item.future.set_exception(ModelNotReady("the service is shutting down"))
        if self._executor is not None:
            # Waiting lets a model call already running finish before its backend may be closed.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    async def submit(self, images: np.ndarray, deadline: float, runner: Runner) -> tuple[np.ndarray, np.ndarray]:
        """The runner's two outputs for ``images`` ([N, ...] float32), this submission's rows only.

        Raises QueueFull at once when the queue holds too many images, DeadlineExceeded when
        ``deadline`` (``time.monotonic()`` seconds) passes first, InferenceError when the model call fails.
        """
        if not self.running:
            raise ModelNotReady("the batcher is not running")
        n = int(images.shape[0])
        if n == 0:
            raise ValueError("submit needs at least one image")
        # A submission larger than the whole queue is let in when the queue is empty, or it could never run.
        if self._depth > 0 and self._depth + n > self.max_queue_size:
            raise QueueFull(f"{self._depth} images are waiting for the model; retry shortly", retry_after_s=1)
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise DeadlineExceeded("the request deadline passed before inference could start")
        item = _Item(images, deadline, runner, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._depth += n
        metrics.QUEUE_DEPTH.set(self._depth)
        self._wakeup.set()
        try:
            # wait_for cancels the future on timeout; the loop then skips it, so a caller never waits forever.
            return await asyncio.wait_for(item.future, timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"no result within the {timeout:.3g} s request deadline") from None

    async def call_on_model_thread(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the model thread, after any model call already running (used to close old models)."""
        if self._executor is None:
            fn()
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # ---- the background task ---------------------------------------------------
    def _take(self) -> _Item:
        item = self._queue.popleft()
        self._depth -= item.size
        metrics.QUEUE_DEPTH.set(self._depth)
        return item

    def _next_live(self) -> _Item | None:
        """Drop items whose caller gave up or whose deadline passed; return the next one still wanted."""
        now = time.monotonic()
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._take()
            elif head.deadline <= now:
                self._take().future.set_exception(DeadlineExceeded("the request deadline passed while queued"))
            else:
                return head
        return None

    def images_per_call(self, runner: Runner) -> int:
        return max(1, self.max_batch_size // max(1, runner.rows_per_image))

    async def _gather(self) -> list[_Item]:
        while self._next_live() is None:
            self._wakeup.clear()
            await self._wakeup.wait()
        first = self._take()
        batch, total = [first], first.size
        if not self.batching:
            return batch
        # Bounded batches also keep the pipeline going: under a burst the loop answers and parses
        # the next requests while the model thread computes this batch, instead of waiting for it.
        limit = self.images_per_call(first.runner)
        close_at = time.monotonic() + self.max_batch_delay_s
        while total < limit:
            head = self._next_live()
            if head is None:
                remaining = close_at - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                continue
            # Order is kept: a submission that does not fit (or needs another model) starts the next batch.
            if head.runner != first.runner or total + head.size > limit:
                break
            batch.append(self._take())
            total += head.size
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            runner = batch[0].runner
            started = time.monotonic()
            for item in batch:
                metrics.QUEUE_WAIT.labels(runner.model_version).observe(started - item.enqueued)
            try:
                images = batch[0].images if len(batch) == 1 else np.concatenate([i.images for i in batch], axis=0)
                rows = runner.prepare(images) if runner.prepare is not None else images
                outputs = await loop.run_in_executor(self._executor, self._call, runner, rows, len(images))
                first, second = runner.finish(images, *outputs) if runner.finish is not None else outputs
                if first.shape[0] != len(images) or second.shape[0] != len(images):
                    raise ValueError(f"the runner returned {first.shape[0]}/{second.shape[0]} rows for {len(images)}")
            except Exception as exc:
                log.exception("model call failed", extra={"model_version": runner.model_version})
                error = InferenceError(f"the model call failed ({type(exc).__name__}); the batch was not answered")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            offset = 0
            for item in batch:
                span = slice(offset, offset + item.size)
                offset += item.size
                if not item.future.done():
                    item.future.set_result((first[span], second[span]))

    def _call(self, runner: Runner, rows: np.ndarray, images: int) -> tuple[np.ndarray, np.ndarray]:
        """Run on the model thread; more rows than max_batch_size (a large submission) run in chunks."""
        metrics.BATCH_SIZE.labels(runner.model_version).observe(images)
        probs_parts, feature_parts = [], []
        for start in range(0, rows.shape[0], self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            began = time.perf_counter()
            probs, features = runner.fn(chunk)
            metrics.INFERENCE_DURATION.labels(runner.model_version, runner.backend, runner.device).observe(
                time.perf_counter() - began
            )
            if probs.shape[0] != chunk.shape[0] or features.shape[0] != chunk.shape[0]:
                raise ValueError(f"model returned {probs.shape[0]}/{features.shape[0]} rows for {chunk.shape[0]}")
            probs_parts.append(probs)
            feature_parts.append(features)
        if len(probs_parts) == 1:
            return probs_parts[0], feature_parts[0]
        return np.concatenate(probs_parts), np.concatenate(feature_parts)
