"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``) on ``MNIST_GRPC_PORT``.

It runs in the HTTP server's process and event loop, so it shares the model manager, the batcher and the
guards; its requests take the same steps as ``POST /v2/models/mnist/infer`` (``oip_input.tensor_images``,
``oip_answer.predict_all``) under the same limits: the largest message is ``MNIST_MAX_BODY_BYTES``, its
arrival's deadline ``MNIST_BODY_TIMEOUT_S``, the inference deadline ``MNIST_REQUEST_TIMEOUT_S``, the calls at
once ``MNIST_LIMIT_CONCURRENCY``, an idle connection's life ``MNIST_TIMEOUT_KEEP_ALIVE_S``. Errors go
through the one table (``errors.refusal``) and leave as the gRPC status that matches their HTTP one. Each
call is counted (``protocol="grpc"``) and logged like an HTTP request. The stubs are the ones tritonclient
ships: Triton's superset of the protocol, whose extra calls (model control, shared memory, statistics)
answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from registry import RegistryError, layout
from service.api.access import CLIENT_CLOSED_REQUEST, safe_request_id
from service.api.errors import GRPC_CODE_BY_STATUS, refusal
from service.api.grpc_messages import UNPARSED, MessageReader, PendingMessage
from service.api.oip_answer import model_metadata, output_tensor, predict_all, served_model
from service.api.routes_oip import EXTENSIONS, SERVER_NAME
from service.errors import InvalidInput, ServiceError
from service.inputs.oip_input import OUTPUT_PARAMETERS, requested_outputs, tensor_images
from service.logging_setup import REQUEST_ID
from service.metrics import IN_FLIGHT, PROTOCOL_GRPC, request_duration, requests_total

log = logging.getLogger("service.access")
SERVICE = "/inference.GRPCInferenceService/"
PROBES = frozenset({"ServerLive", "ServerReady"})
CONTENTS_FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                   "fp32_contents", "fp64_contents", "bytes_contents")  # fmt: skip
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def request_id(context: grpc.aio.ServicerContext) -> str:
    sent = next((value for key, value in context.invocation_metadata() or () if key == "x-request-id"), None)
    return safe_request_id(sent if isinstance(sent, str) else None)


def observed(handler: Handler) -> Handler:
    """Metrics, access line and the error table around one call, as the access middleware does for HTTP."""
    endpoint = SERVICE + handler.__name__
    counted = handler.__name__ not in PROBES  # as over HTTP: probes are not the load in flight

    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = REQUEST_ID.set(request_id(context))
        began, status, version = time.perf_counter(), 200, ""
        if counted:
            IN_FLIGHT.inc()
        try:
            if isinstance(request, PendingMessage):
                request = await request.read(handler.__name__)
            if request is UNPARSED:
                raise InvalidInput(f"the {handler.__name__} message is not valid protobuf for its type")
            response = await handler(self, request, context)
            version = getattr(response, "model_version", "") if handler.__name__ == "ModelInfer" else ""
            return response
        except asyncio.CancelledError:  # the client cancelled or its deadline passed: nobody to answer, as HTTP's
            status = CLIENT_CLOSED_REQUEST
            raise
        except Exception as exc:
            status, refusal = _refusal(exc)
        finally:
            if counted:
                IN_FLIGHT.dec()
            _record(endpoint, status, version, time.perf_counter() - began)
            REQUEST_ID.reset(token)
        # The status set and no message returned, rather than context.abort(): its AbortError would carry this
        # frame, and so the request, until a full collection; raised in the except block, it would also chain exc
        # and the handler's frames. Hundreds of MB a call for a 4 MB request of two million entries.
        context.set_code(refusal[0])  # only a refused call gets here
        context.set_details(refusal[1])
        return None

    call.__name__ = handler.__name__
    return call


def _refusal(exc: Exception) -> tuple[int, tuple[grpc.StatusCode, str]]:
    """The HTTP status of a failed call and the gRPC status and message that say it, from the one table."""
    status, _, message, _ = refusal(exc)
    return status, (grpc.StatusCode[GRPC_CODE_BY_STATUS.get(status, "INTERNAL")], message)


def _record(endpoint: str, status: int, version: str, elapsed: float) -> None:
    """The call's counter, latency and access line."""
    requests_total(endpoint, "POST", status, PROTOCOL_GRPC).inc()
    if status != CLIENT_CLOSED_REQUEST:  # the latency of answers, as for HTTP
        request_duration(endpoint, version, PROTOCOL_GRPC).observe(elapsed)
    fields = {
        "method": "POST",
        "path": endpoint,
        "route": endpoint,
        "protocol": PROTOCOL_GRPC,
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "model_version": version or None,
    }
    log.log(logging.INFO if endpoint == SERVICE + "ModelInfer" else logging.DEBUG, "request", extra=fields)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The protocol's calls, named as the protocol names them."""

    def __init__(self, app: Any) -> None:
        self.state = app.state  # the HTTP app's: the same manager and settings
        self.version = app.version

    @observed
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    @observed
    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=bool(self.state.manager.ready))

    @observed
    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            served_model(self.state.manager, request.name, request.version)
        except (ServiceError, RegistryError):  # another model or version, or none loaded: not ready, as Triton says
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    @observed
    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_pb2.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=EXTENSIONS)

    @observed
    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        manager = self.state.manager
        facts, number = served_model(manager, request.name, request.version)
        doc = model_metadata(facts, number, manager.served_backend)
        tensors = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[tensors(**t) for t in doc["inputs"]],
            outputs=[tensors(**t) for t in doc["outputs"]],
        )

    @observed
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        state = self.state
        facts, number = served_model(state.manager, request.model_name, request.model_version)
        if len(request.inputs) != 1:
            raise InvalidInput(f"send one input tensor, {facts.input.name!r}")
        if len(request.raw_input_contents) > 1:  # one per input when used at all, as Triton requires
            raise InvalidInput(f"{len(request.raw_input_contents)} raw_input_contents for one input tensor")
        tensor = request.inputs[0]
        raw = request.raw_input_contents[0] if request.raw_input_contents else None
        wanted = "fp32_contents" if tensor.datatype == "FP32" else "uint_contents"
        contents = getattr(tensor.contents, wanted)
        if raw is None and not contents:  # "has 0 values" said nothing of values sent in another field
            filled = next((name for name in CONTENTS_FIELDS if len(getattr(tensor.contents, name, ()))), None)
            if filled is not None:
                raise InvalidInput(f"a {tensor.datatype[:10]!r} tensor's values go in contents.{wanted}, not {filled}")
        # The repeated fields as they are, never list()ed: tensor_images counts them before it reads any value.
        images = tensor_images(
            tensor.name,
            tensor.datatype,
            tensor.shape,
            raw=raw,
            data=None if raw is not None else contents,
            input_name=facts.input.name,
            pixel_scale=facts.preprocessing.pixel_scale,
            max_images=state.settings.max_batch_images,
        )
        role_by_name = {spec.name: role for role, spec in facts.outputs.items()}
        outputs = requested_outputs(
            _asked(request.outputs, len(role_by_name)), role_by_name, facts.outputs[layout.OUTPUT_PROBABILITIES].name
        )
        features = any(role_by_name[o.name] == layout.OUTPUT_FEATURES for o in outputs)
        results = await predict_all(state, images, features, number if request.model_version else None)
        version = str(results[0].model_version)
        response = service_pb2.ModelInferResponse(model_name=layout.MODEL_NAME, model_version=version, id=request.id)
        for wanted in outputs:
            array = output_tensor(results, role_by_name[wanted.name], state.settings.return_probabilities)
            response.outputs.add(name=wanted.name, datatype="FP32", shape=list(array.shape))
            response.raw_output_contents.append(array.astype("<f4", copy=False).tobytes())
        return response


def _asked(requested: Any, most: int) -> list[dict[str, Any]] | None:
    """The requested outputs as HTTP's JSON has them, for the same checks; None when none is named.

    One more than the model has is enough to refuse too many: each item read makes a Python object for it, and
    two million of them (4 MB of empty entries) took seconds and hundreds of MB until a full collection."""
    return [{"name": o.name, "parameters": _parameters(o.parameters)} for o in requested[: most + 1]] or None


def _parameters(parameters: Any) -> dict[str, Any]:
    """The parameters a requested output may carry, as Python values: an InferParameter is a oneof."""
    values = {}
    for name in OUTPUT_PARAMETERS:  # looked up, not iterated: the map may be long
        if name in parameters:
            choice = parameters[name].WhichOneof("parameter_choice")
            values[name] = None if choice is None else getattr(parameters[name], choice)
    return values


def _not_served(name: str) -> Handler:
    """One of Triton's calls this service does not serve: UNIMPLEMENTED in words, counted and logged as any call.
    Left to the generated base class it raised NotImplementedError: the caller saw the exception's class name and
    the log an error-level traceback, neither counted nor given an access line (tritonclient's statistics call)."""
    endpoint = SERVICE + name

    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
        token = REQUEST_ID.set(request_id(context))
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details(f"{name} is not served here; this service answers {', '.join(SERVED)}")
        _record(endpoint, NOT_SERVED, "", 0.0)
        REQUEST_ID.reset(token)

    call.__name__ = name
    return call


METHODS = list(service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)
SERVED = [name for name in METHODS if name in InferenceServicer.__dict__]
NOT_SERVED = 501  # HTTP's Not Implemented, in the counters and the access line
for _name in set(METHODS) - set(SERVED):
    setattr(InferenceServicer, _name, _not_served(_name))


async def start(app: Any, host: str, port: int) -> grpc.aio.Server:
    """A started gRPC server on ``host:port``, with the HTTP side's limits: the message size, and calls at once."""
    settings = app.state.settings
    options = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", settings.max_body_bytes),
        # Advertised to clients in HTTP/2's SETTINGS, so that one channel queues its calls instead of being refused.
        ("grpc.max_concurrent_streams", settings.limit_concurrency),
        # Without this, grpc core answers streams past the cap on one connection with RST_STREAM (UNAVAILABLE,
        # uncounted) instead of letting the client queue them as the advertised limit asks.
        ("grpc.http.overload_protection", 0),
        # A connection with no call open is closed after HTTP's keep-alive timeout, as uvicorn closes an idle one:
        # otherwise one that never opens a call stays for ever (clients open another for their next call).
        ("grpc.max_connection_idle_ms", 1000 * settings.timeout_keep_alive_s),
        # As many connections as HTTP allows: one beyond it is closed at once (the client sees UNAVAILABLE).
        ("grpc.max_allowed_incoming_connections", settings.limit_concurrency),
    ]
    # Each call holds up to a message of memory: beyond the cap, a call is answered RESOURCE_EXHAUSTED at once, as
    # uvicorn answers 503 beyond it over HTTP.
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=settings.limit_concurrency,
        interceptors=[MessageReader(settings.body_timeout_s)],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(app), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)  # grpcio returns 0 or, since 1.60-ish, raises
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address} (MNIST_GRPC_PORT): in use, or not an address here")
    await server.start()
    return server
