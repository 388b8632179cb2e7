"""A small HTTP/1.1 keep-alive load generator for ``serve_bench.py``: asyncio protocols on uvloop.

Why not httpx, or even asyncio streams: on this 2-core machine the client
shares the CPU with the server. Pre-encoded requests, a Content-Length-only
response parser and callbacks that send the next request from the one that
read the answer cost ~25 µs of CPU per request (httpx costs several times
more). The less the client takes, the more the figures describe the server;
its CPU share, and the whole machine's CPU per request, are printed next to
every cell anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import psutil


def encode_request(path: str, body: bytes, content_type: str, host: str = "127.0.0.1") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("latin-1") + body


@dataclass
class CellResult:
    """Throughput counts answers inside the window; latencies cover every request sent in it.

    A request sent near the end is still awaited, so a slow cell (latency longer
    than the window) reports its latency instead of nothing.
    """

    concurrency: int
    seconds: float
    completed: int = 0  # answers received inside the measured window
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    client_cpu: float = 0.0  # share of one core the client used while measuring
    machine_cpu: float = 0.0  # cores busy on the whole machine while measuring (server, client, kernel)
    server_cpu_s: float = float("nan")  # CPU seconds the server's processes used while measuring

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def cpu_us_per_request(self) -> float:
        """Machine CPU time per answered request: what one request costs server, client and kernel together."""
        return self.machine_cpu * self.seconds / self.completed * 1e6 if self.completed else float("nan")

    @property
    def server_cpu_us_per_request(self) -> float:
        """The server's own CPU time per answered request: what other load on the machine barely changes."""
        return self.server_cpu_s / self.completed * 1e6 if self.completed else float("nan")

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")


class _Connection(asyncio.Protocol):
    """One keep-alive client connection, driven by callbacks: each complete response sends the next
    request at once, with no coroutine, future or stream reader in between (the cheapest client asyncio
    allows, so the CPU the two share goes to the server). Content-Length responses only."""

    def __init__(self, cell: _Cell, turn: int) -> None:
        self.cell, self.turn = cell, turn
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0
        self.waiting = False  # a request is out and its response not complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.cell.opening -= 1
        self.cell.live.add(self)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        cell = self.cell
        self.sent = time.perf_counter()
        if self.sent >= cell.until:
            self.transport.close()
            return
        self.transport.write(cell.requests[self.turn % len(cell.requests)])
        self.turn += cell.result.concurrency
        self.waiting = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiting:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status, length, close = _parse_head(bytes(self.buffer[:end]))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.waiting = False
            self.cell.record(self.sent, status)
            if close:
                self._reconnect()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cell.live.discard(self)
        if self.waiting:  # the server dropped us mid-request: an error, then a new connection
            self.waiting = False
            self.cell.record(self.sent, 599)
        if time.perf_counter() < self.cell.until:
            self.cell.open(self.turn)
        else:
            self.cell.check_done()

    def _reconnect(self) -> None:
        assert self.transport is not None
        self.transport.close()  # connection_lost opens the next one


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server closes the connection."""
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this load generator")
    return status, length, close


@dataclass
class _Cell:
    port: int
    requests: list[bytes]
    result: CellResult
    measure_from: float
    until: float
    live: set[_Connection] = field(default_factory=set)
    opening: int = 0  # connections asked for and not yet made
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # held, so the loop does not drop them
    done: asyncio.Future[None] | None = None

    def record(self, sent: float, status: int) -> None:
        if sent >= self.measure_from:
            finished = time.perf_counter()
            self.result.latencies_s.append(finished - sent)
            self.result.statuses[status] += 1
            self.result.completed += finished <= self.until

    def open(self, turn: int) -> None:
        """A new connection (counted as opening until connection_made), retried while the server refuses."""
        self.opening += 1

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            while True:
                try:
                    await loop.create_connection(lambda: _Connection(self, turn), "127.0.0.1", self.port)
                    return
                except OSError:
                    if time.perf_counter() >= self.until:
                        self.opening -= 1
                        self.check_done()
                        return
                    await asyncio.sleep(0.05)

        self.tasks.add(task := asyncio.get_running_loop().create_task(connect()))
        task.add_done_callback(self.tasks.discard)

    def check_done(self) -> None:
        if not self.live and not self.opening and self.done is not None and not self.done.done():
            self.done.set_result(None)


async def run_cell(
    port: int,
    requests: list[bytes],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    server: psutil.Process | None = None,
) -> CellResult:
    """``concurrency`` keep-alive connections sending ``requests`` round-robin; measure after a warm-up.
    With ``server`` (the server's process, workers under it included) its CPU time is measured too."""
    result = CellResult(concurrency=concurrency, seconds=duration_s)
    start = time.perf_counter()
    cell = _Cell(port, requests, result, start + warmup_s, start + warmup_s + duration_s)
    cell.done = asyncio.get_running_loop().create_future()
    cpu_at: dict[str, float] = {}
    for index in range(concurrency):
        cell.open(index)
    await asyncio.sleep(max(0.0, cell.measure_from - time.perf_counter()))
    cpu_at["start"], cpu_at["machine_start"] = time.process_time(), _machine_busy_s()
    cpu_at["server_start"] = _process_busy_s(server)
    await asyncio.sleep(max(0.0, cell.until - time.perf_counter()))
    cpu_at["end"], cpu_at["machine_end"] = time.process_time(), _machine_busy_s()
    result.server_cpu_s = _process_busy_s(server) - cpu_at["server_start"]
    # Requests sent before the end are still awaited (their latency counts); then every connection closes.
    await asyncio.wait_for(cell.done, timeout=60)
    result.client_cpu = (cpu_at["end"] - cpu_at["start"]) / duration_s
    result.machine_cpu = (cpu_at["machine_end"] - cpu_at["machine_start"]) / duration_s
    return result


def run(cell: Coroutine[Any, Any, CellResult]) -> CellResult:
    """Run a cell on uvloop when it is installed (as the server does), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(cell)
    return uvloop.run(cell)


def _machine_busy_s() -> float:
    """CPU seconds spent so far by every core, in user, system and interrupt time (idle and iowait left out)."""
    times = psutil.cpu_times()
    # On Linux guest time is already inside user and nice; steal is time the hypervisor took away.
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _process_busy_s(root: psutil.Process | None) -> float:
    """CPU seconds (user + system) used so far by ``root`` and every process under it; NaN without one."""
    if root is None:
        return float("nan")
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
