"""The Open Inference Protocol over gRPC, in process: what a refused request costs and keeps, the checks it shares
with HTTP, and the cap on calls at once. A fake manager stands in for the model; the server is grpc.aio's own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from loadtests.server import free_port
from service.api.grpc_oip import InferenceServicer, observed, start
from service.errors import InvalidInput
from service.settings import Settings
from tests.helpers import synthetic_digit
from tests.unit.api_fakes import FakePrediction

DIGIT = synthetic_digit(7).astype(np.uint8)
SERVICE_INFER = "/inference.GRPCInferenceService/ModelInfer"
LIMIT = 8
OUTPUTS = {"probabilities": SimpleNamespace(name="probabilities"), "features": SimpleNamespace(name="features")}
FACTS = SimpleNamespace(
    input=SimpleNamespace(name="image"), preprocessing=SimpleNamespace(pixel_scale=1 / 255), outputs=OUTPUTS
)


class Manager:
    """Serves version 3; each predict waits for ``release``, as a call waits on a busy model."""

    model_version, ready, not_ready_reason, served_facts = 3, True, None, FACTS

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def predict(self, images: np.ndarray, *, features: bool = False) -> list[Any]:
        self.waiting += 1
        await self.release.wait()
        return [FakePrediction(7, 0.9, [0.01] * 7 + [0.9] + [0.01] * 2, 3) for _ in images]


def fake_app(body_timeout_s: float = 10.0, timeout_keep_alive_s: int = 5) -> SimpleNamespace:
    settings = SimpleNamespace(
        max_body_bytes=4 * 1024 * 1024,
        max_batch_images=8,
        return_probabilities=True,
        limit_concurrency=LIMIT,
        body_timeout_s=body_timeout_s,
        timeout_keep_alive_s=timeout_keep_alive_s,
    )
    return SimpleNamespace(state=SimpleNamespace(manager=Manager(), settings=settings), version="test")


@contextlib.asynccontextmanager
async def serving(**timeouts: float) -> AsyncIterator[tuple[SimpleNamespace, str]]:
    app, port = fake_app(**timeouts), free_port()
    server = await start(app, "127.0.0.1", port)
    try:
        yield app, f"127.0.0.1:{port}"
    finally:
        app.state.manager.release.set()
        await server.stop(None)


def tensor(**fields: Any) -> service_pb2.ModelInferRequest.InferInputTensor:
    return service_pb2.ModelInferRequest.InferInputTensor(**{"name": "image", "datatype": "UINT8", **fields})


def digit_request(**fields: Any) -> service_pb2.ModelInferRequest:
    return service_pb2.ModelInferRequest(
        model_name="mnist", inputs=[tensor(shape=[1, 28, 28])], raw_input_contents=[DIGIT.tobytes()], **fields
    )


async def infer(address: str, request: bytes | service_pb2.ModelInferRequest) -> grpc.aio.AioRpcError | Any:
    """The call's answer, or the error it was refused with, over a connection of its own."""
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    # Channels to one address share a connection unless told not to: this call must not queue behind another's.
    async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        call = channel.unary_unary(SERVICE_INFER, response_deserializer=service_pb2.ModelInferResponse.FromString)
        try:
            return await call(raw, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error


# ---- a refusal keeps nothing of its request ------------------------------------------


class Request:
    """A request that can be watched with a weak reference (protobuf messages cannot)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


class Rows:
    """Stands for what a handler makes of a request before it refuses it: two million dicts, say."""


def test_a_refused_call_keeps_neither_its_request_nor_what_the_handler_made() -> None:
    """grpc.aio keeps a call's AbortError in a reference cycle: aborting kept the request (and, raised inside the
    except block, the handler's frames) until a full collection. 4 MB requests of two million empty outputs grew
    the server by ~500 MB a call."""
    alive: dict[str, weakref.ref[Any]] = {}

    def deserialize(raw: bytes) -> Request:
        request = Request(raw)
        alive["request"] = weakref.ref(request)
        return request

    async def ModelInfer(self: Any, request: Any, context: Any) -> Any:  # named as the call observed() logs
        rows = Rows()
        alive["rows"] = weakref.ref(rows)
        raise InvalidInput("unknown output ''")

    async def scenario() -> tuple[grpc.aio.AioRpcError, bool, bool]:
        wrapped = observed(ModelInfer)

        async def unary(request: Any, context: Any) -> Any:
            return await wrapped(None, request, context)

        rpc = grpc.unary_unary_rpc_method_handler(unary, request_deserializer=deserialize)
        server, port = grpc.aio.server(), free_port()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.S", {"M": rpc})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary("/t.S/M")(b"x" * 100)
            await asyncio.sleep(0.1)  # the server side's end of the call
            return caught.value, alive["request"]() is not None, alive["rows"]() is not None
        finally:
            await server.stop(None)

    gc.collect()
    gc.disable()  # only reference counts free anything now, as between two full collections
    try:
        error, request_kept, rows_kept = asyncio.run(scenario())
    finally:
        gc.enable()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == "unknown output ''"
    assert not request_kept and not rows_kept


# ---- long repeated fields are counted, never read --------------------------------------


class Counted(Sequence[Any]):
    """A repeated field that counts the items read from it (len() of a protobuf repeated field reads none)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items, self.read = items, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        got = self.items[index]
        self.read += len(got) if isinstance(index, slice) else 1
        return got


class Context:
    """grpc.aio's servicer context: a refusal is set on it, or raised through abort()."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError()


def refusal(request: Any) -> Context:
    context = Context()
    with contextlib.suppress(grpc.aio.AbortError):
        asyncio.run(InferenceServicer(fake_app()).ModelInfer(request, context))
    return context


def counted_request(outputs: Sequence[Any] = (), **tensor_fields: Any) -> SimpleNamespace:
    fields = {"shape": [1, 28, 28], "contents": SimpleNamespace(uint_contents=[], fp32_contents=[]), **tensor_fields}
    tensor = SimpleNamespace(name="image", datatype="UINT8", **fields)
    raw = [] if "contents" in tensor_fields else [DIGIT.tobytes()]
    return SimpleNamespace(
        model_name="mnist", model_version="", id="", inputs=[tensor], raw_input_contents=raw, outputs=outputs
    )


EMPTY_OUTPUT = service_pb2.ModelInferRequest.InferRequestedOutputTensor()


@pytest.mark.parametrize(
    ("field", "request_with", "says"),
    [
        ("outputs", lambda f: counted_request(outputs=f), "more outputs requested than the model has"),
        ("shape", lambda f: counted_request(shape=f), "got 4000000 dimensions"),
        (
            "uint_contents",
            lambda f: counted_request(contents=SimpleNamespace(uint_contents=f, fp32_contents=[])),
            "more than the 784 values the shape needs",
        ),
    ],
)
def test_a_long_repeated_field_is_refused_having_read_a_few_items(field: str, request_with, says: str) -> None:
    """Each item read from a repeated field makes a Python object: 4 M shape dimensions took 0.6 s, 4 M contents
    0.46 s, two million outputs (4 MB) seconds and ~100 MB, before the refusal."""
    items = [EMPTY_OUTPUT] * 2_095_000 if field == "outputs" else [1] * 4_000_000
    repeated = Counted(items)
    context = refusal(request_with(repeated))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and says in context.details, context.details
    assert repeated.read <= 3


def test_grpc_refuses_what_http_refuses_in_a_requested_outputs_parameters() -> None:
    """Over HTTP {"classification": 2} is 422 and binary_data must be a boolean; gRPC dropped the parameters."""
    output = service_pb2.ModelInferRequest.InferRequestedOutputTensor
    classification = output(
        name="probabilities", parameters={"classification": service_pb2.InferParameter(int64_param=2)}
    )
    not_a_flag = output(name="probabilities", parameters={"binary_data": service_pb2.InferParameter(int64_param=1)})
    for wanted, says in ((classification, "classification extension is not supported"), (not_a_flag, "true or false")):
        context = refusal(digit_request(outputs=[wanted]))
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT and says in context.details, context.details


# ---- over the wire --------------------------------------------------------------------


def test_two_million_empty_outputs_are_refused_as_invalid() -> None:
    """The reviewer's request: 4.19 MB of empty `outputs` entries, under the 4 MiB message limit."""
    raw = digit_request().SerializeToString() + b"\x32\x00" * 2_095_000  # field 6 (outputs), an empty message each

    async def scenario() -> Any:
        async with serving() as (_, address):
            return await infer(address, raw)

    error = asyncio.run(scenario())
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more outputs requested than the model has" in (error.details() or "")


def test_calls_beyond_the_cap_are_resource_exhausted_and_one_channel_waits_its_turn() -> None:
    """MNIST_LIMIT_CONCURRENCY calls at once, as over HTTP: each may hold a 4 MiB message. The cap is also advertised
    per connection, so a channel queues its calls rather than losing them."""

    async def scenario() -> tuple[list[Any], Any, Any, int]:
        async with serving() as (app, address):
            manager = app.state.manager
            request = digit_request()
            async with grpc.aio.insecure_channel(address) as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                held = [asyncio.ensure_future(stub.ModelInfer(request)) for _ in range(5 * LIMIT)]
                while manager.waiting < LIMIT:
                    await asyncio.sleep(0.01)
                beyond = await infer(address, request)  # another connection: refused, not queued
                queued_while_full = manager.waiting
                manager.release.set()
                answers = await asyncio.gather(*held, return_exceptions=True)
            after = await infer(address, request)
            return answers, beyond, after, queued_while_full

    answers, beyond, after, queued_while_full = asyncio.run(scenario())
    assert isinstance(beyond, grpc.aio.AioRpcError) and beyond.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert queued_while_full == LIMIT
    assert all(isinstance(answer, service_pb2.ModelInferResponse) for answer in answers), answers
    assert isinstance(after, service_pb2.ModelInferResponse)


def test_a_call_whose_message_does_not_arrive_in_time_is_deadline_exceeded_counted_and_its_place_freed() -> None:
    """grpc waits for a unary call's message without a deadline: calls stalled before it held every place among
    the calls at once for ever. Now the message must arrive within MNIST_BODY_TIMEOUT_S, as an HTTP body must;
    one that comes late but in time is answered."""
    from prometheus_client import REGISTRY

    body_s = 2.0  # half of it to fill every place: 0.8 s (0.4 s) was too short once on a busy machine
    labels = {"endpoint": SERVICE_INFER, "method": "POST", "status": "408", "protocol": "grpc"}
    waits = {"endpoint": SERVICE_INFER, "model_version": "", "protocol": "grpc"}  # the refused calls' latency
    before = REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0
    waited_before = REGISTRY.get_sample_value("mnist_request_duration_seconds_sum", waits) or 0.0
    message = digit_request().SerializeToString()

    async def sends_after(delay_s: float) -> AsyncIterator[bytes]:
        await asyncio.sleep(delay_s)
        yield message

    async def scenario() -> tuple[Any, list[Any], float, Any, Any]:
        async with serving(body_timeout_s=body_s) as (app, address):
            app.state.manager.release.set()  # the model answers at once
            # One connection carries the stalled calls (its stream limit is LIMIT), another the one in time.
            channels = [
                grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(2)
            ]
            await asyncio.gather(*(channel.channel_ready() for channel in channels))
            stalling, late = (channel.stream_unary(SERVICE_INFER) for channel in channels)
            loop = asyncio.get_running_loop()
            start = loop.time()
            # Headers at once, then no message for an hour: a client that stalls before its message.
            stalled = [asyncio.ensure_future(stalling(sends_after(3600))) for _ in range(LIMIT)]
            while_stalled: Any = None
            while loop.time() - start < body_s / 2 and not isinstance(while_stalled, grpc.aio.AioRpcError):
                while_stalled = await infer(address, digit_request())  # answered until every place is taken
                await asyncio.sleep(0.01)
            await asyncio.wait(stalled, timeout=4 * body_s)
            waited = loop.time() - start
            ended = [call.exception() if call.done() else "still waiting" for call in stalled]
            in_time = await late(sends_after(body_s / 2), timeout=10)
            for channel in channels:
                await channel.close()
            return while_stalled, ended, waited, in_time, await infer(address, digit_request())

    while_stalled, ended, waited, in_time, after = asyncio.run(scenario())
    assert isinstance(while_stalled, grpc.aio.AioRpcError), while_stalled
    assert while_stalled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all(isinstance(e, grpc.aio.AioRpcError) for e in ended), ended
    assert {(e.code(), e.details()) for e in ended} == {
        (grpc.StatusCode.DEADLINE_EXCEEDED, f"the request body did not arrive within {body_s:g} s; send it at once")
    }
    assert body_s <= waited <= 4 * body_s, waited
    assert REGISTRY.get_sample_value("mnist_requests_total", labels) == before + LIMIT
    # Each 408's latency is its wait for the message, as HTTP's is its wait for the body.
    assert REGISTRY.get_sample_value("mnist_request_duration_seconds_sum", waits) >= waited_before + LIMIT * body_s
    assert service_pb2.ModelInferResponse.FromString(in_time).outputs[0].name == "probabilities"
    assert isinstance(after, service_pb2.ModelInferResponse)


def test_a_call_cancelled_before_its_message_is_a_hang_up_and_one_closed_without_a_message_is_invalid() -> None:
    """grpc ends the server's read the same way for both: the first is counted 499 as HTTP's hang-ups are, not as
    the client's error; the second is told what is missing."""
    from prometheus_client import REGISTRY

    def count(status: str) -> float:
        labels = {"endpoint": SERVICE_INFER, "method": "POST", "status": status, "protocol": "grpc"}
        return REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0

    async def never_sends() -> AsyncIterator[bytes]:
        await asyncio.sleep(3600)
        yield b""

    async def sends_nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    before = count("499"), count("422")

    async def scenario() -> Any:
        async with serving() as (_, address), grpc.aio.insecure_channel(address) as channel:
            cancelled = channel.stream_unary(SERVICE_INFER)(never_sends())
            await asyncio.sleep(0.2)
            cancelled.cancel()
            try:
                await channel.stream_unary(SERVICE_INFER)(sends_nothing(), timeout=10)
            except grpc.aio.AioRpcError as error:
                await asyncio.sleep(0.2)  # the cancelled call's record
                return error
            return None

    error = asyncio.run(scenario())
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "no ModelInfer message was sent")
    assert (count("499"), count("422")) == (before[0] + 1, before[1] + 1)


def test_a_connection_without_a_call_is_closed_after_the_keep_alive_timeout_and_the_client_reconnects() -> None:
    """As uvicorn closes an idle HTTP connection: a connection that never opens a call no longer stays for ever,
    nor does one that sends not a byte."""

    async def scenario() -> tuple[float, float, Any]:
        async with serving(timeout_keep_alive_s=1) as (app, address):
            app.state.manager.release.set()  # the model answers at once
            host, port = address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            start = asyncio.get_running_loop().time()
            await asyncio.wait_for(reader.read(), timeout=5)  # to the end: the server closed it
            silent_closed_after = asyncio.get_running_loop().time() - start
            writer.close()
            async with grpc.aio.insecure_channel(address) as channel:
                await channel.channel_ready()
                loop = asyncio.get_running_loop()
                start = loop.time()
                while channel.get_state() == grpc.ChannelConnectivity.READY and loop.time() - start < 5:
                    await asyncio.sleep(0.02)
                closed_after = loop.time() - start
                answer = await channel.unary_unary(SERVICE_INFER)(digit_request().SerializeToString(), timeout=10)
            return silent_closed_after, closed_after, service_pb2.ModelInferResponse.FromString(answer)

    silent_closed_after, closed_after, answer = asyncio.run(scenario())
    assert 0.8 <= silent_closed_after <= 2.5, silent_closed_after
    assert 0.8 <= closed_after <= 2.5, closed_after
    assert answer.outputs[0].name == "probabilities"


def test_connections_beyond_the_limit_are_closed_at_once_and_the_open_ones_keep_working() -> None:
    """As HTTP caps its connections at MNIST_LIMIT_CONCURRENCY: before, any number of connections that never open a
    call each held a socket and grpc's memory for a connection until the keep-alive timeout, and came back."""

    async def scenario() -> tuple[int, Any, Any, Any]:
        async with serving(timeout_keep_alive_s=30) as (app, address):
            app.state.manager.release.set()  # the model answers at once
            host, port = address.split(":")
            async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as held:
                await held.channel_ready()
                silent = [await asyncio.open_connection(host, int(port)) for _ in range(2 * LIMIT)]
                closed = 0
                for reader, _ in silent:
                    with contextlib.suppress(TimeoutError):
                        closed += await asyncio.wait_for(reader.read(1), timeout=0.5) == b""
                beyond = await infer(address, digit_request())
                on_the_held_connection = await held.unary_unary(SERVICE_INFER)(
                    digit_request().SerializeToString(), timeout=10
                )
                for _, writer in silent:
                    writer.close()
                await asyncio.sleep(0.2)
                after = await infer(address, digit_request())
            return closed, beyond, service_pb2.ModelInferResponse.FromString(on_the_held_connection), after

    closed, beyond, held_answer, after = asyncio.run(scenario())
    assert closed == LIMIT + 1  # the held channel is one of the LIMIT
    assert isinstance(beyond, grpc.aio.AioRpcError) and beyond.code() == grpc.StatusCode.UNAVAILABLE
    assert held_answer.outputs[0].name == "probabilities"
    assert isinstance(after, service_pb2.ModelInferResponse)


def test_a_message_that_is_not_protobuf_is_invalid_argument_counted_and_logged_like_any_refusal() -> None:
    """Left to grpc, garbage was UNKNOWN naming the parser's exception, an error-level traceback in the log (four
    bytes a line), and no count or access line."""
    from prometheus_client import REGISTRY

    labels = {"endpoint": SERVICE_INFER, "method": "POST", "status": "422", "protocol": "grpc"}
    before = REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0

    async def scenario() -> tuple[Any, Any]:
        async with serving() as (app, address):
            app.state.manager.release.set()  # the model answers at once
            return await infer(address, b"\xff\xff\xff\xff"), await infer(address, digit_request())

    garbage, good = asyncio.run(scenario())
    assert isinstance(garbage, grpc.aio.AioRpcError) and garbage.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert garbage.details() == "the ModelInfer message is not valid protobuf for its type"
    assert REGISTRY.get_sample_value("mnist_requests_total", labels) == before + 1
    assert isinstance(good, service_pb2.ModelInferResponse)


def test_a_grpc_port_already_taken_is_refused_naming_the_setting() -> None:
    """grpcio raises on a port it cannot bind (older releases returned 0): either way the message names the setting."""
    app = SimpleNamespace(state=SimpleNamespace(settings=Settings()), version="1.0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen for gRPC on 127\.0\.0\.1:{port} \(MNIST_GRPC_PORT\)"):
            asyncio.run(start(app, "127.0.0.1", port))


def test_a_grpc_probe_is_not_counted_in_flight_as_over_http() -> None:
    from prometheus_client import REGISTRY

    seen: dict[str, float | None] = {}
    context = SimpleNamespace(invocation_metadata=lambda: None)

    async def ServerLive(self: Any, request: Any, context: Any) -> str:
        seen["probe"] = REGISTRY.get_sample_value("mnist_requests_in_flight")
        return "live"

    async def ModelInfer(self: Any, request: Any, context: Any) -> str:
        seen["call"] = REGISTRY.get_sample_value("mnist_requests_in_flight")
        return "answer"

    at_rest = REGISTRY.get_sample_value("mnist_requests_in_flight")
    asyncio.run(observed(ServerLive)(None, object(), context))
    asyncio.run(observed(ModelInfer)(None, object(), context))
    assert seen == {"probe": at_rest, "call": at_rest + 1}


def test_a_triton_call_not_served_here_is_unimplemented_in_words_and_counted() -> None:
    """tritonclient's get_inference_statistics: the caller saw "Unexpected <class 'NotImplementedError'>" and the log
    an error-level traceback, with no count or access line."""
    from prometheus_client import REGISTRY

    endpoint = "/inference.GRPCInferenceService/ModelStatistics"
    labels = {"endpoint": endpoint, "method": "POST", "status": "501", "protocol": "grpc"}
    before = REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0

    async def scenario() -> grpc.aio.AioRpcError:
        async with serving() as (_, address), grpc.aio.insecure_channel(address) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            try:
                await stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="mnist"), timeout=10)
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("answered")

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == (
        "ModelStatistics is not served here; this service answers ServerLive, ServerReady, ModelReady, "
        "ServerMetadata, ModelMetadata, ModelInfer"
    )
    assert REGISTRY.get_sample_value("mnist_requests_total", labels) == before + 1


def test_values_sent_in_the_wrong_contents_field_are_named() -> None:
    """UINT8 pixels in int_contents were refused as "input 'image' has 0 values; the shape needs 784"."""
    pixels = DIGIT.astype(np.int32).ravel().tolist()
    contents = service_pb2.InferTensorContents(int_contents=pixels)
    request = service_pb2.ModelInferRequest(model_name="mnist", inputs=[tensor(shape=[1, 28, 28], contents=contents)])

    async def scenario() -> Any:
        async with serving() as (app, address):
            app.state.manager.release.set()
            return await infer(address, request)

    refused = asyncio.run(scenario())
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "a 'UINT8' tensor's values go in contents.uint_contents, not int_contents"
