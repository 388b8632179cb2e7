"""``make bench``'s image section: digits as people send them, as multipart uploads (issue 13).

Three kinds, rendered by ``benchmarks/renders.py`` from held-out digits: a
280x280 canvas PNG, a >= 1600x1200 phone-photo JPEG and a 28x28 MNIST-style PNG,
each sent as the ``file`` field of a multipart form to ``POST /predict``.
Three servers, started together and kept running under the same uvicorn settings
(``service.__main__.serve``), 2 workers each, 16 concurrent keep-alive clients;
cells alternate between them over ``--rounds`` rounds (reversed every other
round) and the medians are shown, so the drift of this shared machine falls on
all three alike:

- the service (``MNIST_WORKERS=2``), plus canvas uploads at concurrency 64;
- ``bare_decode_app.py``: Starlette parses the form and Pillow decodes, no model (the cost floor);
- ``naive_app.py``: FastAPI, Pillow -> grey -> 28x28 -> onnxruntime of the same registry model.

For each cell: req/s, p50/p99, the server's own CPU time per request and the
whole machine's; how many answers name the right digit (the service and the
naive server); the service's throughput as a share of the bare server's per
kind, and the issue's targets with PASS/FAIL, with the same share computed from
server CPU per request (steadier when other work shares the machine); RSS per worker. Writes
``benchmarks/results/images.md``.

    python benchmarks/image_bench.py --models models            # about two minutes
    python benchmarks/image_bench.py --models models --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import CellResult, encode_request
from benchmarks.real_world_accuracy import held_out_digits
from benchmarks.renders import KINDS, render
from benchmarks.serve_bench import environment_note, measure, server, worker_rss
from loadtests.digits import multipart_file
from loadtests.run import registry_is_empty
from registry import Registry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FILES = {"canvas": ("drawing.png", "image/png"), "photo": ("IMG_0001.jpg", "image/jpeg"),
         "png28": ("digit.png", "image/png")}  # fmt: skip
COUNTS = {"canvas": 48, "photo": 16, "png28": 64}  # distinct payloads per kind; photos are ~0.5 MB each
TARGET_SHARE = {"canvas": 0.5, "photo": 1.0, "png28": 0.5}  # service req/s over the bare server's, c=16
TARGET_P99_MS, TARGET_RSS_MIB, CONCURRENCY, HIGH_CONCURRENCY, WORKERS = 50.0, 200.0, 16, 64, 2
SERVERS = ("service", "bare decode", "naive")


@dataclass
class Payload:
    request: bytes
    label: int


@dataclass
class Cell:
    """One server, kind and concurrency: a result per round, summarised by the median."""

    server: str
    kind: str
    concurrency: int
    right: float | None  # share of all the kind's payloads answered with the right digit; None: it names none
    rounds: list[CellResult] = field(default_factory=list)

    def median(self, value: Callable[[CellResult], float]) -> float:
        return statistics.median(value(r) for r in self.rounds) if self.rounds else float("nan")

    @property
    def rps(self) -> float:
        return self.median(lambda r: r.rps)


def build_payloads(models: Path, quick: bool) -> dict[str, list[Payload]]:
    """The same renders as real_world_accuracy.py (same split, seed and per-digit streams), first N of each kind."""
    trained = Registry(models).model_metadata(Registry(models).resolve(None)).training_config
    seed = int(trained.get("seed", 0))
    x, y, _, _ = held_out_digits(Path(trained["data"]) if trained.get("data") else None, seed)
    out: dict[str, list[Payload]] = {}
    for kind in KINDS:
        count = max(4, COUNTS[kind] // 4) if quick else COUNTS[kind]
        out[kind] = []
        for i in range(count):
            data = render(kind, x[i], np.random.default_rng([seed, KINDS.index(kind), i])).data
            body, content_type = multipart_file(data, *FILES[kind])
            out[kind].append(Payload(encode_request("/predict", body, content_type), int(y[i])))
    return out


def answer_one(port: int, request: bytes) -> tuple[int, dict[str, object]]:
    """Status and JSON answer of one request, on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    return response.status, answer if isinstance(answer, dict) else {}


def check_answers(port: int, payloads: list[Payload]) -> tuple[list[Payload], float | None]:
    """The payloads answered 200, and the share of all answered with the right digit (None: no digits)."""
    kept, right, digits = [], 0, 0
    for payload in payloads:
        status, answer = answer_one(port, payload.request)
        for _ in range(300):  # a second worker still warming up answers 503 for a moment after the first is ready
            if status != 503:
                break
            time.sleep(0.1)
            status, answer = answer_one(port, payload.request)
        if status == 200:
            kept.append(payload)
        if "digit" in answer:
            digits += 1
            right += answer["digit"] == payload.label
    return kept, (right / len(payloads) if digits else None)


def start_servers(stack: contextlib.ExitStack, args: argparse.Namespace) -> dict[str, tuple[int, psutil.Process]]:
    """All three servers at once, each on its own port: cells can then alternate between them, so a slow
    spell of this shared machine falls on all three instead of on whichever happened to run then."""
    running = {}
    env = {"MNIST_MODEL_DIR": str(args.models.resolve())}
    for name in SERVERS:
        if name == "service":
            cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--workers", str(WORKERS)]
        else:
            script = "bare_decode_app.py" if name == "bare decode" else "naive_app.py"
            cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--workers", str(WORKERS)]
        running[name] = stack.enter_context(server(cmd, env, f"images_{name.replace(' ', '_')}"))
    return running


def build_cells(running: dict[str, tuple[int, psutil.Process]], payloads: dict[str, list[Payload]]
                ) -> tuple[list[Cell], dict[str, list[bytes]]]:  # fmt: skip
    """Every server's answers to every payload, and the load: the payloads the service answers (a refusal is
    not throughput), the same for all three."""
    cells, load = [], {}
    for kind in KINDS:
        for name in SERVERS:
            kept, right = check_answers(running[name][0], payloads[kind])
            if name == "service":
                refused = len(payloads[kind]) - len(kept)
                if refused:
                    print(f"  note: the service refused {refused} of {len(payloads[kind])} {kind} payloads; left out")
                if not kept:
                    raise SystemExit(f"the service refused every {kind} payload: see {RESULTS}/images_service.log")
                load[kind] = [p.request for p in kept]
            elif len(kept) < len(payloads[kind]):
                raise SystemExit(f"{name} did not answer 200 to every {kind} payload: see {RESULTS}")
            cells.append(Cell(name, kind, CONCURRENCY, right))
    cells.append(Cell("service", "canvas", HIGH_CONCURRENCY, next(c.right for c in cells if c.server == "service")))
    return cells, load


def run_rounds(cells: list[Cell], running: dict[str, tuple[int, psutil.Process]], load: dict[str, list[bytes]],
               args: argparse.Namespace) -> None:  # fmt: skip
    """Each round runs every cell once, kind by kind, the servers in turn; every other round in reverse."""
    for number in range(args.rounds):
        print(f"- round {number + 1} of {args.rounds}", flush=True)
        for cell in cells if number % 2 == 0 else cells[::-1]:
            port, proc = running[cell.server]
            cell.rounds.append(measure(port, load[cell.kind], cell.concurrency, args, proc))
            print(f"  {format_cell(cell, latest=True)}", flush=True)


HEADER = ["server", "kind", "conc", "req/s", "p50 ms", "p99 ms", "errors", "server CPU us/req", "machine CPU us/req",
          "others' cores", "right answers"]  # fmt: skip
BUSY_CORES = 0.25  # other processes' average load above which throughput shares are not to be trusted


def others_cores(r: CellResult) -> float:
    """Cores kept busy during the cell by neither the server nor the load generator: other people's work."""
    return r.machine_cpu - r.client_cpu - r.server_cpu_s / r.seconds


def format_cell(cell: Cell, sep: str = "  ", latest: bool = False) -> str:
    """Medians over the rounds (with the req/s range when there are several), or the latest round alone."""
    pick = (lambda value: value(cell.rounds[-1])) if latest else cell.median
    rps = f"{pick(lambda r: r.rps):.0f}"
    if not latest and len(cell.rounds) > 1:
        rps += f" ({min(r.rps for r in cell.rounds):.0f}-{max(r.rps for r in cell.rounds):.0f})"
    right = f"{cell.right:.0%}" if cell.right is not None else "-"
    return sep.join([
        f"{cell.server:<12}", f"{cell.kind:<7}", f"{cell.concurrency:>4}", f"{rps:>15}",
        f"{pick(lambda r: r.percentile_ms(50)):>7.1f}", f"{pick(lambda r: r.percentile_ms(99)):>7.1f}",
        f"{sum(r.errors for r in cell.rounds):>6}", f"{pick(lambda r: r.server_cpu_us_per_request):>10.0f}",
        f"{pick(lambda r: r.cpu_us_per_request):>10.0f}", f"{pick(others_cores):>6.2f}", f"{right:>6}",
    ])  # fmt: skip


def verdicts(cells: list[Cell], rss: dict[str, list[float]]) -> list[tuple[bool, str]]:
    def find(server: str, kind: str, concurrency: int = CONCURRENCY) -> Cell | None:
        return next((c for c in cells if (c.server, c.kind, c.concurrency) == (server, kind, concurrency)), None)

    out = []
    for kind in KINDS:
        svc, bare = find("service", kind), find("bare decode", kind)
        if svc and bare and bare.rps:
            share = svc.rps / bare.rps
            # The CPU each takes per answer varies far less with other load on the machine than req/s does:
            # the share the service would reach if both were CPU-bound on the same cores.
            cpu_share = bare.median(lambda r: r.server_cpu_us_per_request) / svc.median(
                lambda r: r.server_cpu_us_per_request
            )
            out.append((share >= TARGET_SHARE[kind], f"{kind}: service {svc.rps:.0f} req/s = {share:.2f}x the bare "
                        f"decode server's {bare.rps:.0f} (target >= {TARGET_SHARE[kind]:.1f}x); by server CPU per "
                        f"request {cpu_share:.2f}x"))  # fmt: skip
        if svc:
            errors = sum(r.errors for r in svc.rounds)
            out.append((errors == 0, f"{kind}: service errors at c={CONCURRENCY}: {errors}"))
    high = find("service", "canvas", HIGH_CONCURRENCY)
    if high:
        p99 = high.median(lambda r: r.percentile_ms(99))
        floor = HIGH_CONCURRENCY / TARGET_P99_MS * 1000  # closed loop: mean latency = concurrency / throughput
        out.append((p99 <= TARGET_P99_MS, f"canvas c={HIGH_CONCURRENCY}: service p99 {p99:.1f} ms (target <= "
                    f"{TARGET_P99_MS:.0f} ms, which needs >= {floor:.0f} req/s; measured {high.rps:.0f})"))  # fmt: skip
    worst = max(rss.get("service", []), default=float("nan"))
    out.append((worst <= TARGET_RSS_MIB, f"service RSS per worker {worst:.0f} MiB (target <= {TARGET_RSS_MIB:.0f})"))
    return out


def write_markdown(cells: list[Cell], rss: dict[str, list[float]], checks: list[tuple[bool, str]], note: str) -> Path:
    lines = ["# Image uploads benchmark (latest run)", "", note, "", "| " + " | ".join(HEADER) + " |",
             "|" + "---|" * len(HEADER)]  # fmt: skip
    lines += [
        "| " + " | ".join(c.strip() for c in format_cell(cell, sep="\x00").split("\x00")) + " |" for cell in cells
    ]
    lines += ["", "| server | RSS per worker (MiB) |", "|---|---|"]
    lines += [f"| {name} | {', '.join(f'{m:.0f}' for m in values)} |" for name, values in rss.items()]
    lines += ["", *[f"- {'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks], ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "images.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry root")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each cell")
    parser.add_argument("--rounds", type=int, default=2, help="times each cell runs, alternating order; medians")
    parser.add_argument("--quick", action="store_true", help="1 s cells, one round, a quarter of the payloads")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = min(args.duration, 1.0), min(args.warmup, 0.3), 1
    if registry_is_empty(args.models):
        print(f"Registry {args.models} has no model version: run `make train` first.", file=sys.stderr)
        return 2

    machine = environment_note(args).split(" The load generator")[0].replace("ceiling", "both reference servers")
    note = (f"{machine} {WORKERS} workers per server, all three running throughout; {args.rounds} round(s), cells "
            "alternating between servers, medians shown. Payloads rendered by benchmarks/renders.py. The load "
            "generator (benchmarks/loadgen.py) shares the CPUs: 'server CPU us/req' is the server processes' CPU "
            "time per answered request, 'machine CPU us/req' every core's (server, client, kernel).")  # fmt: skip
    print(note, flush=True)
    payloads = build_payloads(args.models, args.quick)
    sizes = {k: sum(len(p.request) for p in v) // len(v) // 1024 for k, v in payloads.items()}
    print("payloads: " + ", ".join(f"{len(payloads[k])} {k} (~{sizes[k]} KiB)" for k in KINDS), flush=True)
    with contextlib.ExitStack() as stack:
        print(f"- starting the service and both reference servers, {WORKERS} workers each", flush=True)
        running = start_servers(stack, args)
        cells, load = build_cells(running, payloads)
        run_rounds(cells, running, load, args)
        rss = {name: worker_rss(proc) for name, (_port, proc) in running.items()}

    print()
    print("  ".join(HEADER))
    for cell in cells:
        print(format_cell(cell))
    print()
    for name, values in rss.items():
        print(f"RSS per worker, {name}: {', '.join(f'{m:.0f} MiB' for m in values)}")
    checks = verdicts(cells, rss)
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    busy = max(cell.median(others_cores) for cell in cells)
    if busy > BUSY_CORES:
        warning = (f"WARNING: other processes kept up to {busy:.2f} of this machine's {psutil.cpu_count()} cores "
                   "busy during the cells: req/s and its shares are unreliable (a busy machine squeezes them toward "
                   "1x); the shares by server CPU per request are steadier. Rerun on a quiet machine.")  # fmt: skip
        print(warning)
        note += f"\n\n{warning}"
    print(f"written: {write_markdown(cells, rss, checks, note).relative_to(ROOT)}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
