"""How a gRPC call's one message reaches its handler: under the body deadline HTTP has, leniently parsed.

grpc waits for a unary call's message without a deadline of its own and answers a message that does not parse
as UNKNOWN with an error-level traceback; here both become the service's own refusals (``grpc_oip.observed``
counts and logs them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.api.limits import body_timeout
from service.errors import InvalidInput

# What a handler gets for a message that does not parse as its call's protobuf type (``_lenient``).
UNPARSED = object()
# grpc ends a read with EOF when the call has failed (the client cancelled, its deadline passed, its message was over
# MNIST_MAX_BODY_BYTES), then cancels the handler a moment later; a client that sent no message is still there.
CALL_FAILED_GRACE_S = 0.1


class PendingMessage:
    """A unary call's one message, not read yet: ``observed`` reads it, so the wait is timed, counted and logged."""

    def __init__(self, context: grpc.aio.ServicerContext, timeout_s: float) -> None:
        self.context, self.timeout_s = context, timeout_s

    async def read(self, method: str) -> Any:
        """The message (or UNPARSED); RequestTimeout past the deadline, InvalidInput when the client sent none."""
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await self.context.read()
        except TimeoutError:
            raise body_timeout(self.timeout_s) from None
        if message is grpc.aio.EOF:
            await asyncio.sleep(CALL_FAILED_GRACE_S)  # a failed call is cancelled here: 499, as HTTP's hang-ups
            raise InvalidInput(f"no {method} message was sent")
        return message


class MessageReader(grpc.aio.ServerInterceptor):
    """Gives each unary call's handler its message to read under ``body_timeout_s``, leniently parsed.

    A message that does not parse reaches the handler as ``UNPARSED``, which ``observed`` refuses as invalid_input:
    left to grpc, four bytes of garbage were answered UNKNOWN naming the parser's exception class, written to the
    log as an error with its traceback, and neither counted nor given an access line. grpc itself waits for a
    unary call's message without a deadline of its own, so a call that stalls mid-message would hold its place
    among the calls at once for ever: the handler is registered as taking a stream and gets a ``PendingMessage``,
    read under the body deadline HTTP has (past it 408, DEADLINE_EXCEEDED).
    """

    def __init__(self, body_timeout_s: float) -> None:
        self.body_timeout_s = body_timeout_s
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}  # by method: only the registered ones, a few

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # fmt: skip
        handler = self._handlers.get(details.method)
        if handler is None:
            handler = await continuation(details)
            if handler is None or handler.request_deserializer is None or not _unary(handler):
                return handler  # an unknown method, or one of Triton's streams, which answer UNIMPLEMENTED
            handler = self._handlers[details.method] = grpc.stream_unary_rpc_method_handler(
                self._with_pending_message(handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _with_pending_message(self, unary: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(_: Any, context: grpc.aio.ServicerContext) -> Any:
            return await unary(PendingMessage(context, self.body_timeout_s), context)

        return call


def _unary(handler: grpc.RpcMethodHandler) -> bool:
    return not (handler.request_streaming or handler.response_streaming)


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return UNPARSED

    return deserialize
