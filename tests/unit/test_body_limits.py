"""LimitsMiddleware on its own, by direct ASGI calls: the body cap at its edge, the allow-listed content types and
encodings, and which answers close the connection. The inner app reads the whole body and answers 200 with
its length, so whatever is refused was refused by the middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.api.limits import LimitsMiddleware, media_type
from service.errors import PayloadTooLarge
from tests.unit.api_fakes import call, scope_for

CAP = 1000


async def read_all(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the body to its end and answers with its length (errors raised by receive escape)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": str(size).encode()})


def sending(*chunks: bytes) -> Any:
    """A client that sends ``chunks`` as one streamed body, then disconnects; counts how often it was read."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        receive.reads += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    receive.reads = 0
    return receive


def post(headers: dict[str, str], receive: Any, method: str = "POST") -> tuple[int, dict[bytes, bytes], Any]:
    app = LimitsMiddleware(read_all, max_body_bytes=CAP, body_timeout_s=5.0)
    return asyncio.run(call(app, scope_for(method, "/predict", headers), receive))


JSON = {"content-type": "application/json"}


def test_a_declared_length_over_the_cap_is_413_before_a_byte_is_read() -> None:
    receive = sending(b"x" * (CAP + 1))
    status, headers, body = post({**JSON, "content-length": str(CAP + 1)}, receive)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert body["error"]["message"] == f"request body of {CAP + 1} bytes exceeds the limit of {CAP} bytes"
    assert receive.reads == 0 and headers.get(b"connection") == b"close"


def test_a_body_of_exactly_the_cap_is_read_and_keeps_the_connection() -> None:
    status, headers, body = post({**JSON, "content-length": str(CAP)}, sending(b"x" * CAP))
    assert (status, body) == (200, CAP) and b"connection" not in headers


@pytest.mark.parametrize(("chunks", "status"), [((500, 500), 200), ((500, 501), 413), ((CAP + 1,), 413)])
def test_a_chunked_body_is_counted_as_it_streams(chunks: tuple[int, ...], status: int) -> None:
    answer, _, body = post({**JSON, "transfer-encoding": "chunked"}, sending(*(b"x" * n for n in chunks)))
    assert answer == status
    if status == 413:
        assert body["error"]["message"] == f"request body exceeds the limit of {CAP} bytes"


def test_a_body_longer_than_its_declared_length_is_cut_off() -> None:
    status, headers, body = post({**JSON, "content-length": "10"}, sending(b"x" * 10, b"x" * CAP))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert headers.get(b"connection") == b"close"


@pytest.mark.parametrize("length", ["abc", "-5", ""])
def test_a_content_length_that_is_not_a_number_is_not_trusted(length: str) -> None:
    status, _, body = post({**JSON, "content-length": length, "transfer-encoding": "chunked"}, sending(b"x" * 20))
    assert (status, body) == (200, 20)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "image/png",
        "image/jpeg",
        "multipart/form-data; boundary=x",
        "Application/JSON; charset=utf-8",
    ],
)
def test_the_allowed_content_types_pass(content_type: str) -> None:
    status, _, _ = post({"content-type": content_type, "content-length": "2"}, sending(b"{}"))
    assert status == 200


@pytest.mark.parametrize(("content_type", "shown"), [("text/plain", "'text/plain'"), (None, "'(none)'")])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_another_content_type_is_415_naming_it(content_type: str | None, shown: str, method: str) -> None:
    headers = {"content-length": "2"} if content_type is None else {"content-type": content_type, "content-length": "2"}
    status, _, body = post(headers, sending(b"{}"), method)
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    assert body["error"]["message"] == (
        f"Content-Type {shown} is not accepted; use one of application/json, image/jpeg, image/png, multipart/form-data"
    )


@pytest.mark.parametrize(
    "headers",
    [{"content-length": "0"}, {}, {"content-type": "text/plain", "content-length": "0"}],
    ids=["empty-body", "no-headers", "empty-body-any-type"],
)
def test_a_post_without_a_body_needs_no_content_type(headers: dict[str, str]) -> None:
    status, headers_out, _ = post(headers, sending(b""))
    assert status == 200 and b"connection" not in headers_out


def test_a_get_is_not_asked_for_a_content_type() -> None:
    status, _, _ = post({"content-type": "text/plain", "content-length": "2"}, sending(b"{}"), "GET")
    assert status == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip"])
def test_a_compressed_body_is_415_unsupported_encoding(encoding: str) -> None:
    status, _, body = post({**JSON, "content-encoding": encoding, "content-length": "2"}, sending(b"{}"))
    assert (status, body["error"]["code"]) == (415, "unsupported_encoding")
    assert body["error"]["message"] == "Content-Encoding must be identity; compressed bodies are not accepted"


@pytest.mark.parametrize("encoding", ["identity", " Identity ", ""])
def test_an_identity_encoding_passes(encoding: str) -> None:
    status, _, _ = post({**JSON, "content-encoding": encoding, "content-length": "2"}, sending(b"{}"))
    assert status == 200


def test_a_client_that_leaves_mid_body_is_not_kept_open_for_more() -> None:
    """After a disconnect nothing more can come: the answer needs no Connection: close."""

    async def receive_then_leave() -> dict[str, Any]:
        receive_then_leave.count += 1
        if receive_then_leave.count == 1:
            return {"type": "http.request", "body": b"{", "more_body": True}
        return {"type": "http.disconnect"}

    receive_then_leave.count = 0
    status, headers, _ = post({**JSON, "content-length": "50"}, receive_then_leave)
    assert status == 200 and b"connection" not in headers


def test_an_error_after_the_answer_started_is_not_answered_twice() -> None:
    async def answer_then_read(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()
        await receive()

    app = LimitsMiddleware(answer_then_read, max_body_bytes=CAP, body_timeout_s=5.0)
    scope = scope_for("POST", "/predict", {**JSON, "transfer-encoding": "chunked"})
    with pytest.raises(PayloadTooLarge, match="exceeds the limit"):
        asyncio.run(call(app, scope, sending(b"x" * 600, b"x" * 600)))


def test_a_lifespan_scope_goes_straight_through() -> None:
    seen: list[object] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], await receive()))
        await send({"type": "lifespan.startup.complete"})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        seen.append(message["type"])

    app = LimitsMiddleware(inner, max_body_bytes=CAP, body_timeout_s=5.0)
    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert seen == [("lifespan", {"type": "lifespan.startup"}), "lifespan.startup.complete"]


def test_a_content_type_with_several_parameters_is_judged_by_its_media_type() -> None:
    headers = {"content-type": "multipart/form-data; boundary=x; charset=utf-8", "content-length": "2"}
    assert post(headers, sending(b"{}"))[0] == 200


@pytest.mark.parametrize(
    ("sent", "read_as"),
    [
        ("image/jpg", "image/jpeg"),
        ("Image/PJPEG; q=1", "image/jpeg"),
        ("image/x-png", "image/png"),
        ("text/plain", "text/plain"),
    ],
)
def test_older_names_of_the_two_image_types_are_read_as_them(sent: str, read_as: str) -> None:
    assert media_type(sent) == read_as
    status = post({"content-type": sent, "content-length": "2"}, sending(b"{}"))[0]
    assert status == (415 if read_as == "text/plain" else 200)


def test_an_early_refusal_keeps_its_own_headers_and_adds_close() -> None:
    status, headers, _ = post({"content-type": "text/plain", "content-length": "2"}, sending(b"{}"))
    assert status == 415
    assert headers.get(b"content-type") == b"application/json" and headers.get(b"connection") == b"close"


def test_an_early_refusal_of_a_chunked_body_closes() -> None:
    status, headers, _ = post({"content-type": "text/plain", "transfer-encoding": "chunked"}, sending(b"{}"))
    assert status == 415 and headers.get(b"connection") == b"close"


def test_a_body_in_one_message_without_more_body_is_complete() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    status, headers, body = post({**JSON, "content-length": "2"}, receive)
    assert (status, body) == (200, 2) and b"connection" not in headers


@pytest.mark.parametrize("length", ["0", ""])
def test_an_empty_body_left_unread_keeps_the_connection(length: str) -> None:
    async def answer_at_once(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = LimitsMiddleware(answer_at_once, max_body_bytes=CAP, body_timeout_s=5.0)
    scope = scope_for("POST", "/predict", {**JSON, "content-length": length})
    status, headers, _ = asyncio.run(call(app, scope, sending(b"")))
    assert status == 204 and b"connection" not in headers


def test_a_body_that_stops_arriving_is_408_saying_how_long_it_had() -> None:
    async def stall() -> dict[str, Any]:
        if not stall.sent:
            stall.sent = True
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    stall.sent = False
    app = LimitsMiddleware(read_all, max_body_bytes=CAP, body_timeout_s=0.05)
    status, headers, body = asyncio.run(
        call(app, scope_for("POST", "/predict", {**JSON, "content-length": "50"}), stall)
    )
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert body["error"]["message"] == "the request body did not arrive within 0.05 s; send it at once"
    assert headers.get(b"connection") == b"close"


@pytest.mark.parametrize(
    ("types", "status"), [(("application/json", "text/plain"), 200), (("text/plain", "application/json"), 415)]
)
def test_a_repeated_header_counts_by_its_first_value_as_the_app_reads_it(types: tuple[str, str], status: int) -> None:
    """The limits and the app must judge the same header: Starlette's ``request.headers`` gives the first value,
    so a second Content-Type (or Content-Length) can neither slip a refused type past the limits nor refuse an
    allowed one."""
    app = LimitsMiddleware(read_all, max_body_bytes=CAP, body_timeout_s=5.0)
    scope = scope_for("POST", "/predict", {"content-length": "2"})
    scope["headers"] += [(b"content-type", kind.encode()) for kind in types]
    scope["headers"].append((b"content-length", str(CAP + 1).encode()))
    answer, _, _ = asyncio.run(call(app, scope, sending(b"{}")))
    assert answer == status


def oip_post(headers: dict[str, str], receive: Any) -> tuple[int, dict[bytes, bytes], Any]:
    app = LimitsMiddleware(read_all, max_body_bytes=CAP, body_timeout_s=5.0)
    return asyncio.run(call(app, scope_for("POST", "/v2/models/mnist/infer", headers), receive))


@pytest.mark.parametrize("kind", [None, "application/octet-stream", "application/json"])
def test_open_inference_protocol_bodies_pass_as_its_clients_send_them(kind: str | None) -> None:
    """tritonclient sends binary tensors as octet-stream, or no Content-Type at all; /predict takes neither."""
    headers = {"content-length": "2", **({"content-type": kind} if kind else {})}
    assert oip_post(headers, sending(b"{}"))[0] == 200
    if kind != "application/json":
        assert post(headers, sending(b"{}"))[0] == 415


def test_open_inference_protocol_refusals_are_in_its_own_error_form() -> None:
    status, _, body = oip_post({"content-type": "text/plain", "content-length": "2"}, sending(b"{}"))
    assert status == 415 and isinstance(body["error"], str) and "text/plain" in body["error"]
    # Over the cap while streaming (no declared length): refused by the reader, still in the protocol's form.
    status, _, body = oip_post({"transfer-encoding": "chunked"}, sending(b"x" * CAP, b"x"))
    assert status == 413 and body == {"error": f"request body exceeds the limit of {CAP} bytes"}


@pytest.mark.parametrize(("kind", "status"), [("application/json", 200), ("image/png", 415), ("text/plain", 415)])
def test_the_admin_routes_take_json_alone_and_say_so(kind: str, status: int) -> None:
    app = LimitsMiddleware(read_all, max_body_bytes=CAP, body_timeout_s=5.0)
    headers = {"content-type": kind, "content-length": "2"}
    answer, _, body = asyncio.run(call(app, scope_for("POST", "/admin/reload", headers), sending(b"{}")))
    assert answer == status
    if status == 415:
        assert body["error"]["message"] == f"Content-Type '{kind}' is not accepted; use one of application/json"
