"""The Open Inference Protocol against the service's own JSON, in one server, cells alternated (issue 16).

Two pairs, each run ``--rounds`` times in turn (A, B, then B, A, ...) so drift on a shared machine hits both:

* one digit at concurrency 64: OIP ``FP32 [1,28,28,1]`` as JSON data (what ``tritonclient`` sends with
  ``binary_data=False``) against ``POST /predict`` with JSON; target OIP >= 0.8x the req/s.
* 64 digits per request at concurrency 4: OIP with binary tensor data in and out against
  ``POST /predict/batch`` with JSON; target OIP >= 0.8x the images/s.

Only digits the guards answer are used: one refused image fails a whole OIP request.

    python benchmarks/oip_bench.py --models models [--duration 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import CellResult, encode_request, run, run_cell
from loadtests.digits import Digit, build_pool

BATCH, SINGLE_CONCURRENCY, BATCH_CONCURRENCY, TARGET_RATIO = 64, 64, 4, 0.8
HEADER_LENGTH = "Inference-Header-Content-Length"
INFER = "/v2/models/mnist/infer"


def oip_request(body: bytes, json_length: int | None = None) -> bytes:
    extra = f"{HEADER_LENGTH}: {json_length}\r\n" if json_length is not None else ""
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("latin-1") + body


def fp32_json(digit: Digit) -> bytes:
    data = (digit.pixels.astype(np.float32) / 255.0).reshape(-1)
    doc = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": data}]}
    return oip_request(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))


def fp32_binary_batch(digits: list[Digit]) -> bytes:
    raw = (np.stack([d.pixels for d in digits]).astype(np.float32) / 255.0).astype("<f4").tobytes()
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "FP32",
                "shape": [len(digits), 28, 28, 1],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    header = orjson.dumps(doc)
    return oip_request(header + raw, len(header))


def json_batch(digits: list[Digit]) -> bytes:
    body = orjson.dumps({"images": [d.pixels.astype(int).tolist() for d in digits]})
    return encode_request("/predict/batch", body, "application/json")


def workloads(pool: list[Digit], seed: int = 7) -> dict[str, tuple[list[bytes], int]]:
    """Each workload's requests and images per request."""
    rng = np.random.default_rng(seed)
    batches = [[pool[int(i)] for i in rng.integers(0, len(pool), BATCH)] for _ in range(8)]
    return {
        "predict json": ([encode_request("/predict", d.json_body, "application/json") for d in pool], 1),
        "oip fp32 json": ([fp32_json(d) for d in pool], 1),
        "batch x64 json": ([json_batch(b) for b in batches], BATCH),
        "oip x64 binary": ([fp32_binary_batch(b) for b in batches], BATCH),
    }


PAIRS = (("predict json", "oip fp32 json", SINGLE_CONCURRENCY), ("batch x64 json", "oip x64 binary", BATCH_CONCURRENCY))


def answered(port: int, pool: list[Digit]) -> list[Digit]:
    """The digits the service answers (200) one by one."""
    from benchmarks.serve_bench import measure_one

    return [d for d in pool if measure_one(port, encode_request("/predict", d.json_body, "application/json")) == 200]


def compare(
    port: int, pool: list[Digit], args: argparse.Namespace, server: Any = None
) -> list[tuple[str, CellResult, int]]:
    """(workload, result, images per request) for every cell, in the order run; ``server`` (a psutil.Process)
    adds the server's own CPU time per request, which other load on a shared machine barely changes."""
    loads = workloads(answered(port, pool))
    cells = []
    for baseline, oip, concurrency in PAIRS:
        for round_ in range(args.rounds):
            # A then B, then B then A: a drift across the run favours neither side.
            for name in (baseline, oip) if round_ % 2 == 0 else (oip, baseline):
                requests, images = loads[name]
                result = run(run_cell(port, requests, concurrency, args.warmup, args.duration, server))
                cells.append((name, result, images))
                cpu = result.server_cpu_us_per_request / images
                print(f"  {name:<16} c={concurrency:<3} {result.rps * images:9.0f} images/s  p99 "
                      f"{result.percentile_ms(99):6.1f} ms  server CPU {cpu:6.0f} us/image  errors {result.errors}",
                      flush=True)  # fmt: skip
    return cells


def verdicts(cells: list[tuple[str, CellResult, int]]) -> list[tuple[bool, str]]:
    def results(name: str) -> list[CellResult]:
        return [r for n, r, _ in cells if n == name]

    def rates(name: str) -> list[float]:
        return [r.rps * images for n, r, images in cells if n == name]

    out = []
    for baseline, oip, concurrency in PAIRS:
        ratios = [o / b for o, b in zip(rates(oip), rates(baseline), strict=True) if b]
        if not ratios:
            continue
        errors = sum(r.errors for n, r, _ in cells if n == oip)
        median = statistics.median(ratios)
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        cpu = [
            b.server_cpu_us_per_request / o.server_cpu_us_per_request
            for b, o in zip(results(baseline), results(oip), strict=True)
        ]
        cpu_note = ""
        if cpu and all(c == c for c in cpu):  # NaN when the server process was not measured
            cpu_note = f"; server CPU per image, JSON / OIP: median {statistics.median(cpu):.2f}x"
        out.append((median >= TARGET_RATIO and errors == 0,
                    f"{oip} / {baseline} at c={concurrency}: median {median:.2f}x over {len(ratios)} alternated "
                    f"rounds ({shown}); target >= {TARGET_RATIO}x; OIP errors {errors}{cpu_note}"))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.serve_bench import server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry root")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds per pair")
    args = parser.parse_args(argv)
    cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1"]
    with server(cmd, {"MNIST_MODEL_DIR": str(args.models.resolve())}, "oip_vs_json") as (port, process):
        cells = compare(port, build_pool(64), args, process)
    checks = verdicts(cells)
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
