"""A gRPC call the client cancels, or whose deadline passes, is logged and counted like HTTP's hang-ups."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from service.api.grpc_oip import SERVICE, observed


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
