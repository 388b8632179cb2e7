"""Limits before parsing, on the real server: body cap (declared and streamed), content type, encoding."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ServerHandle, running_server
from tests.helpers import as_json_rows, real_digits

CAP = 64 * 1024


@pytest.fixture(scope="module")
def capped(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server with a small body cap for the whole module: every test here only reads."""
    with running_server(
        tmp_path_factory.mktemp("capped"), {"MNIST_MAX_BODY_BYTES": str(CAP)}, registry=tiny_registry
    ) as handle:
        yield handle


def envelope_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in response.text
    return body["error"]["code"]


def test_declared_length_over_the_cap_is_413(capped: ServerHandle) -> None:
    response = httpx.post(
        capped.base_url + "/predict", content=b"0" * (CAP + 1), headers={"Content-Type": "image/png"}, timeout=10
    )
    assert response.status_code == 413 and envelope_code(response) == "payload_too_large"


def test_chunked_body_over_the_cap_is_413(capped: ServerHandle) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(CAP // 4096 + 4):
            yield b" " * 4096

    response = httpx.post(
        capped.base_url + "/predict", content=chunks(), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 413 and envelope_code(response) == "payload_too_large"


def test_raw_chunked_stream_is_cut_off(capped: ServerHandle) -> None:
    """A raw socket with no Content-Length at all: the count of streamed bytes alone stops it."""
    url = urlsplit(capped.base_url)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b" " * 8192
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head)
        # Stop right after the chunk that crosses the cap: data the server never reads would make it reset.
        for _ in range(CAP // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # a reset after the answer arrived still leaves the answer in `received`
        reply = received.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert '"payload_too_large"' in reply


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "image/gif", "application/x-www-form-urlencoded"]
)
def test_content_type_outside_the_allow_list_is_415(capped: ServerHandle, content_type: str) -> None:
    response = httpx.post(capped.base_url + "/predict", content=b"abc", headers={"Content-Type": content_type})
    assert response.status_code == 415 and envelope_code(response) == "unsupported_media_type"


def test_gzip_encoding_is_415(capped: ServerHandle) -> None:
    body = gzip.compress(json.dumps({"image": as_json_rows(real_digits(1)[0][0])}).encode())
    response = httpx.post(
        capped.base_url + "/predict",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415 and envelope_code(response) == "unsupported_encoding"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"image": NaN}', "application/json", 400, "invalid_json"),
        (b'{"image": [[Infinity]]}', "application/json", 400, "invalid_json"),
        (b"[" * 50_000, "application/json", 400, "invalid_json"),
        (b'{"image": [[true]]}', "application/json", 422, "invalid_input"),
        (b"GIF89a\x01\x00\x01\x00", "image/png", 415, "unsupported_image_format"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", 400, "invalid_image"),
    ],
)
def test_malformed_bodies_get_their_codes(capped: ServerHandle, body: bytes, content_type: str, status: int, code: str):
    response = httpx.post(capped.base_url + "/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status and envelope_code(response) == code
