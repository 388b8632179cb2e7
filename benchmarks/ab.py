"""Alternated A/B: the same cells against two versions of the service, interleaved, over several rounds.

This machine's speed drifts by about ±10 % over minutes, so two separate `make bench` runs cannot tell
a few percent apart. Here each round runs A then B (the next round B then A), every server on the same
registry, payloads and load generator, and the summary sets the difference between the means against
the spread between runs of the same side. A gain inside that spread is not a gain. Next to throughput it
reports the server's own CPU time per request, which other load on the machine changes far less.

    python benchmarks/ab.py --a d9383ef --b . --models models --rounds 3
    make bench-ab BASE=d9383ef
    python benchmarks/ab.py --a HEAD~1 --cells canvas:16 photo:16 png28:16   # image_bench's uploads

``--a`` / ``--b``: a checkout folder, or a git revision checked out into a temporary worktree.
The bare ASGI ceiling (benchmarks/ceiling_app.py) runs once per round as a gauge of the machine's drift.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import image_bench
from benchmarks.renders import KINDS as IMAGE_KINDS
from benchmarks.serve_bench import build_payloads, measure, refuse_payloads, server, worker_rss

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("json:64", "png:64", "json:1")  # workload:concurrency


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A folder holding the service at ``ref``: the folder itself, or a temporary git worktree."""
    if Path(ref).is_dir():
        yield Path(ref).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="mnist-ab-") as tmp:
        folder = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), ref], cwd=ROOT, check=True)
        try:
            yield folder
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)


def summary(label: str, values: list[float]) -> str:
    spread = 100 * (max(values) - min(values)) / statistics.mean(values)
    runs = ", ".join(f"{v:.0f}" for v in values)
    return f"{label}: mean {statistics.mean(values):.0f} (runs {runs}; spread {spread:.0f} %)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alternated A/B benchmark of two versions of the service.")
    parser.add_argument("--a", required=True, help="checkout folder or git revision (the 'before')")
    parser.add_argument("--b", default=".", help="checkout folder or git revision (the 'after'; default: here)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry root both serve")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each cell")
    parser.add_argument(
        "--cells",
        nargs="+",
        default=CELLS,
        help="workload:concurrency; workload json or png (the 28x28 digits of serve_bench), or canvas, photo or "
        "png28 (image_bench's multipart uploads)",
    )
    args = parser.parse_args(argv)
    cells = [(kind, int(concurrency)) for kind, _, concurrency in (cell.partition(":") for cell in args.cells)]

    payloads = build_payloads()
    loads = {"json": payloads.json, "png": payloads.png}
    image_kinds = {kind for kind, _ in cells if kind in IMAGE_KINDS}
    uploads = image_bench.build_payloads(args.models, quick=False) if image_kinds else {}
    env = {"MNIST_MODEL_DIR": str(args.models.resolve())}
    # results[side][(kind, concurrency)] -> [(req/s, p99 ms, server CPU us/request), ...]; one entry a round
    results: dict[str, dict[tuple[str, int], list[tuple[float, float, float]]]] = {"A": {}, "B": {}}
    rss: dict[str, list[float]] = {"A": [], "B": []}
    ceiling: list[float] = []
    with checkout(args.a) as folder_a, checkout(args.b) as folder_b:
        folders = {"A": folder_a, "B": folder_b}
        print(f"A = {args.a} ({folder_a})\nB = {args.b} ({folder_b})", flush=True)
        for round_no in range(args.rounds):
            for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
                cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1"]
                with server(cmd, env, f"ab_{side}", cwd=folders[side]) as (port, proc):
                    if round_no == 0 and side == "A":
                        refuse_payloads(port, payloads)  # the same digits for both sides, every round
                        loads.update(json=payloads.json, png=payloads.png)
                        for kind in image_kinds:
                            loads[kind] = [p.request for p in image_bench.check_answers(port, uploads[kind])[0]]
                    for kind, concurrency in cells:
                        r = measure(port, loads[kind], concurrency, args, proc)
                        cpu = r.server_cpu_us_per_request
                        results[side].setdefault((kind, concurrency), []).append((r.rps, r.percentile_ms(99), cpu))
                        print(f"round {round_no + 1} {side} {kind:>4} c={concurrency:<3} {r.rps:8.0f} req/s  "
                              f"p99 {r.percentile_ms(99):6.1f} ms  server CPU {cpu:6.0f} us/req  "
                              f"errors {r.errors}", flush=True)  # fmt: skip
                    rss[side].extend(worker_rss(proc))
            cmd = [sys.executable, str(ROOT / "benchmarks" / "ceiling_app.py"), "--workers", "1"]
            with server(cmd, {}, "ab_ceiling") as (port, _proc):
                ceiling.append(measure(port, payloads.json, 64, args).rps)
            print(f"round {round_no + 1} ceiling json c=64 {ceiling[-1]:8.0f} req/s", flush=True)

    print("\nSummary (A = before, B = after)")
    for cell in results["A"]:
        kind, concurrency = cell
        print(f"- {kind} c={concurrency}")
        for side in ("A", "B"):
            values = results[side][cell]
            print(f"    {side} req/s {summary('', [v[0] for v in values])[2:]}")
            print(f"    {side} server CPU us/req {summary('', [v[2] for v in values])[2:]}")
            print(f"    {side} p99 ms: {', '.join(f'{v[1]:.1f}' for v in values)}")
        for index, name in ((0, "req/s"), (2, "server CPU us/req")):
            mean_a = statistics.mean(v[index] for v in results["A"][cell])
            mean_b = statistics.mean(v[index] for v in results["B"][cell])
            print(f"    B - A {name}: {100 * (mean_b - mean_a) / mean_a:+.1f} %")
    print(f"- {summary('ceiling json c=64 req/s', ceiling)}")
    for side in ("A", "B"):
        print(f"- largest RSS per worker {side}: {max(rss[side]):.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
