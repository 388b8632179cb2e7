"""A small raw-asyncio HTTP/1.1 keep-alive load generator for ``serve_bench.py``.

Why not httpx: on this 2-core machine the client shares the CPU with the
server, and httpx spends several times more CPU per request than this loop
(pre-encoded requests, a Content-Length-only response reader). The less the
client takes, the more the figures describe the server; its CPU share is
measured and printed next to every cell anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

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

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code and whether the server wants the connection closed; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
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
    if length:
        await reader.readexactly(length)
    return status, close


async def run_cell(
    port: int, requests: list[bytes], concurrency: int, warmup_s: float, duration_s: float
) -> CellResult:
    """``concurrency`` keep-alive connections sending ``requests`` round-robin; measure after a warm-up."""
    result = CellResult(concurrency=concurrency, seconds=duration_s)
    start = time.perf_counter()
    measure_from, until = start + warmup_s, start + warmup_s + duration_s
    cpu_at: dict[str, float] = {}

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        turn = index
        try:
            while (sent := time.perf_counter()) < until:
                writer.write(requests[turn % len(requests)])
                turn += concurrency
                try:
                    status, close = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    status, close = 599, True  # the server dropped us: an error, then reconnect
                done = time.perf_counter()
                if sent >= measure_from:
                    result.latencies_s.append(done - sent)
                    result.statuses[status] += 1
                    result.completed += done <= until
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    async def cpu_probe() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_at["start"], cpu_at["machine_start"] = time.process_time(), _machine_busy_s()
        await asyncio.sleep(max(0.0, until - time.perf_counter()))
        cpu_at["end"], cpu_at["machine_end"] = time.process_time(), _machine_busy_s()

    await asyncio.gather(cpu_probe(), *(connection(i) for i in range(concurrency)))
    result.client_cpu = (cpu_at["end"] - cpu_at["start"]) / duration_s
    result.machine_cpu = (cpu_at["machine_end"] - cpu_at["machine_start"]) / duration_s
    return result


def _machine_busy_s() -> float:
    """CPU seconds spent so far by every core, in user, system and interrupt time (idle and iowait left out)."""
    times = psutil.cpu_times()
    # On Linux guest time is already inside user and nice; steal is time the hypervisor took away.
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
