"""Shared-slot deadlines: they fire once passed (never early), dropped ones never, and timeout_at behaves as
asyncio.timeout_at does. Run on both loops the service may get: asyncio's and uvloop's (uvicorn's choice)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from service import deadlines

pytestmark = pytest.mark.unit

LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    return LOOPS[request.param]


def test_a_deadline_fires_once_passed_and_not_before(run) -> None:
    async def scenario() -> list[float]:
        fired: list[float] = []
        done = asyncio.Event()
        await asyncio.sleep(0)
        time.sleep(0.03)  # a busy loop: uvloop's cached clock now lags, and its timers would run early
        began = time.monotonic()
        for offset in (0.03, 0.0301, 0.06):  # two share a slot, one has its own
            deadline = began + offset

            def on_expiry(deadline: float = deadline) -> None:
                fired.append(time.monotonic() - deadline)
                if len(fired) == 3:
                    done.set()

            deadlines.arm(deadline, object(), on_expiry)
        await asyncio.wait_for(done.wait(), 2)
        return fired

    lateness = run(scenario())
    assert len(lateness) == 3
    assert min(lateness) >= 0, "a deadline fired before it passed"
    assert max(lateness) < deadlines.RESOLUTION_S + 0.05


def test_a_dropped_deadline_never_fires_and_its_neighbours_still_do(run) -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []
        deadline = time.monotonic() + 0.02
        kept, dropped = object(), object()
        deadlines.arm(deadline, kept, lambda: fired.append("kept"))
        slot = deadlines.arm(deadline, dropped, lambda: fired.append("dropped"))
        deadlines.drop(slot, dropped)
        await asyncio.sleep(0.02 + 3 * deadlines.RESOLUTION_S)
        return fired

    assert run(scenario()) == ["kept"]


def test_a_failing_callback_does_not_keep_the_others_in_its_slot_from_firing(run) -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []
        deadline = time.monotonic() + 0.01

        def broken() -> None:
            raise RuntimeError("boom")

        deadlines.arm(deadline, object(), broken)
        deadlines.arm(deadline, object(), lambda: fired.append("second"))
        await asyncio.sleep(0.01 + 3 * deadlines.RESOLUTION_S)
        return fired

    assert run(scenario()) == ["second"]


def test_timeout_at_raises_timeout_error_when_the_wait_outlasts_the_deadline(run) -> None:
    async def scenario() -> tuple[float, str]:
        began = time.monotonic()
        with pytest.raises(TimeoutError), deadlines.timeout_at(began + 0.05):
            await asyncio.Event().wait()  # never set
        waited = time.monotonic() - began
        # The task is not left cancelled: it goes on awaiting normally.
        await asyncio.sleep(0.01)
        return waited, "went on"

    waited, after = run(scenario())
    assert 0.05 <= waited < 0.05 + deadlines.RESOLUTION_S + 0.1
    assert after == "went on"


def test_timeout_at_lets_a_wait_that_ends_in_time_through_and_never_fires_later(run) -> None:
    async def scenario() -> str:
        with deadlines.timeout_at(time.monotonic() + 0.05):
            await asyncio.sleep(0.001)
        # Past the deadline the finished block must not cancel whatever the task waits on next.
        await asyncio.sleep(0.05 + 3 * deadlines.RESOLUTION_S)
        return "ok"

    assert run(scenario()) == "ok"


def test_a_cancellation_from_outside_stays_a_cancellation(run) -> None:
    async def scenario() -> bool:
        async def waiter() -> None:
            with deadlines.timeout_at(time.monotonic() + 5):
                await asyncio.Event().wait()

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert run(scenario()) is True


def test_a_loop_closed_with_deadlines_pending_is_not_kept_alive_by_them() -> None:
    import gc
    import weakref

    async def leave_one_pending() -> weakref.ref[asyncio.AbstractEventLoop]:
        deadlines.arm(time.monotonic() + 60, object(), lambda: None)
        return weakref.ref(asyncio.get_running_loop())

    closed = asyncio.run(leave_one_pending())
    gc.collect()
    assert closed() is None, "a closed loop is kept alive by its pending slots"


def test_an_infinite_deadline_never_fires_and_a_nan_one_is_refused(run) -> None:
    async def scenario() -> list[str]:
        fired: list[str] = []
        slot = deadlines.arm(float("inf"), object(), lambda: fired.append("inf"))
        with pytest.raises(ValueError):
            deadlines.arm(float("nan"), object(), lambda: fired.append("nan"))
        await asyncio.sleep(3 * deadlines.RESOLUTION_S)
        deadlines.drop(slot, object())
        return fired

    assert run(scenario()) == []


def test_an_expiry_is_a_timeout_even_when_an_earlier_cancellation_was_caught(run) -> None:
    """As asyncio.timeout_at: a cancellation caught (and not taken back) before the block does not turn
    the block's own expiry into a CancelledError."""

    async def scenario() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # caught without uncancel(): cancelling() stays 1
            await asyncio.sleep(1)
        with pytest.raises(TimeoutError), deadlines.timeout_at(time.monotonic() + 0.02):
            await asyncio.Event().wait()
        return task.cancelling()

    assert run(scenario()) == 1  # ours was taken back; the earlier one is left as it was
