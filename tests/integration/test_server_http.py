"""The server layer ``python -m service`` runs under (service.__main__.serve), exercised on the benchmark's
bare ASGI app so no model is needed: the request-head cap holds with whichever HTTP parser is in use, and
several workers answer without the 40 ms delayed-ACK stall a socket without TCP_NODELAY causes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.run import free_port, wait_ready
from tests.helpers import terminate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"image":[' + b",".join([b"[" + b",".join([b"0"] * 28) + b"]"] * 28) + b"]}"


def request(head_extra: bytes = b"") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\n%bContent-Length: %d\r\n\r\n%b" % (head_extra, len(BODY), BODY)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def ceiling(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    cmd = [sys.executable, "benchmarks/ceiling_app.py", "--port", str(port), "--workers", str(request.param)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout_s=30)
        yield port
    finally:
        terminate(proc)


def exchange(port: int, data: bytes, pieces: int = 1) -> bytes:
    """Send ``data`` in ``pieces`` (as a slow client would) and return the status line, or b"" if cut off."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        step = len(data) // pieces + 1
        try:
            for start in range(0, len(data), step):
                sock.sendall(data[start : start + step])
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send; the answer may still be readable
        try:
            return sock.makefile("rb").readline().rstrip()
        except ConnectionResetError:
            return b""


def test_a_head_over_16_kib_is_refused_while_a_large_body_is_not(ceiling: int) -> None:
    assert exchange(ceiling, request()) == b"HTTP/1.1 200 OK"
    assert exchange(ceiling, request(b"X-Pad: " + b"a" * 10_000 + b"\r\n"), pieces=8) == b"HTTP/1.1 200 OK"
    refused = exchange(ceiling, request(b"X-Pad: " + b"a" * 40_000 + b"\r\n"), pieces=8)
    assert refused in (b"HTTP/1.1 400 Bad Request", b"")


def test_small_requests_do_not_wait_for_delayed_acks(ceiling: int) -> None:
    with socket.create_connection(("127.0.0.1", ceiling), timeout=5) as sock:
        reader = sock.makefile("rb")
        began = time.perf_counter()
        for _ in range(20):
            sock.sendall(request())
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
        # Without TCP_NODELAY each answer waits ~40 ms for the client's delayed ACK: 20 would take ~0.8 s.
        assert (time.perf_counter() - began) / 20 < 0.02
