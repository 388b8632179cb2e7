"""gRPC calls accounted for as HTTP requests are: a cancelled call is a hang-up (499), a refused one logged alike."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.api.grpc_oip import SERVICE, observed
from service.errors import QueueFull


class Context:
    """The one part of grpc.aio's servicer context the wrapper reads before the handler runs."""

    def invocation_metadata(self) -> tuple[()]:
        return ()


async def ModelInfer(self: Any, request: Any, context: Any) -> Any:  # the protocol's name: the access line's route
    await asyncio.sleep(3600)  # a large batch on the model, when the client gives up


def test_a_cancelled_call_is_499_without_a_latency_sample() -> None:
    """grpc.aio cancels the handler's task when the client cancels or its deadline passes: nothing was answered,
    so it must not read as a 200 with a latency in the dashboards."""
    endpoint = SERVICE + "ModelInfer"

    def count(status: str) -> float:
        labels = {"endpoint": endpoint, "method": "POST", "status": status, "protocol": "grpc"}
        return REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0

    def timed() -> float:
        labels = {"endpoint": endpoint, "model_version": "", "protocol": "grpc"}
        return REGISTRY.get_sample_value("mnist_request_duration_seconds_count", labels) or 0.0

    before = count("499"), count("200"), timed()

    async def scenario() -> None:
        call = asyncio.create_task(observed(ModelInfer)(None, None, Context()))
        await asyncio.sleep(0.01)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

    asyncio.run(scenario())
    assert (count("499"), count("200"), timed()) == (before[0] + 1, before[1], before[2])


def test_a_refused_call_is_logged_as_http_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    """A full queue under load is no bug: one error line naming the code, as over HTTP, not a traceback per call;
    a fault nothing mapped keeps its traceback."""

    def logged(exc: Exception) -> list[logging.LogRecord]:
        async def ModelInfer(self: Any, request: Any, context: Any) -> Any:  # the protocol's name
            raise exc

        caplog.clear()
        with caplog.at_level(logging.ERROR):
            asyncio.run(observed(ModelInfer)(None, object(), Refusals()))
        return [r for r in caplog.records if r.levelno >= logging.ERROR]

    (full,) = logged(QueueFull("too many images are waiting"))
    assert full.getMessage() == "server fault" and full.exc_info is None
    (bug,) = logged(RuntimeError("a bug"))
    assert bug.getMessage() == "unhandled error" and bug.exc_info is not None


class Refusals(Context):
    """Takes the status a refused call is answered with."""

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details
