"""Prove MNIST_DEVICE=cuda serves through onnxruntime's CUDAExecutionProvider, and time it.

Needs a machine with an NVIDIA GPU and ``onnxruntime-gpu`` (``pip install -e '.[serve,gpu]'``).
Prints: the providers onnxruntime offers; raw model time per image on CUDA and
CPU at batch 1, 64 and 1024 with their agreement; then the real service
started with MNIST_DEVICE=cuda and with MNIST_DEVICE=cpu — the device it reports
in /health/ready, /models and /metrics, and requests/s and latency for JSON
digits at concurrency 1 and 64 and for the batch endpoint.

    python benchmarks/gpu_check.py --models models
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serve_bench import build_payloads, measure, server
from registry import Registry, layout

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def raw_model(onnx_path: Path) -> None:
    x = np.random.default_rng(0).random((1024, 28, 28, 1), dtype=np.float32)
    sessions = {p: ort.InferenceSession(str(onnx_path), providers=[p]) for p in (CUDA, CPU)}
    print(f"session providers: cuda={sessions[CUDA].get_providers()} cpu={sessions[CPU].get_providers()}")
    outputs = {p: s.run(["probabilities"], {"image": x[:256]})[0] for p, s in sessions.items()}
    diff = float(np.abs(outputs[CUDA] - outputs[CPU]).max())
    same = bool((outputs[CUDA].argmax(1) == outputs[CPU].argmax(1)).all())
    print(f"CUDA vs CPU on 256 inputs: max |diff| {diff:.2e}, identical argmax: {same}")
    print(f"{'batch':>6}  {'CUDA us/image':>14}  {'CPU us/image':>13}")
    for batch in (1, 64, 1024):
        row = []
        for provider in (CUDA, CPU):
            session, xb = sessions[provider], x[:batch]
            for _ in range(5):
                session.run(["probabilities"], {"image": xb})
            times = []
            for _ in range(30):
                start = time.perf_counter()
                session.run(["probabilities"], {"image": xb})
                times.append(time.perf_counter() - start)
            row.append(statistics.median(times) / batch * 1e6)
        print(f"{batch:>6}  {row[0]:>14.2f}  {row[1]:>13.2f}")


def service(models: Path, device: str, args: argparse.Namespace) -> None:
    payloads = build_payloads()
    env = {"MNIST_MODEL_DIR": str(models), "MNIST_DEVICE": device, "MNIST_LOG_LEVEL": "warning"}
    with server([sys.executable, "-m", "service"], env, f"gpu_check_{device}") as (port, _proc):
        ready = json.loads(_get(port, "/health/ready"))
        status = json.loads(_get(port, "/models"))
        info = [line for line in _get(port, "/metrics").splitlines() if line.startswith("mnist_model_info")]
        print(f"\nMNIST_DEVICE={device}: /health/ready -> {ready}")
        print(f"  /models providers -> {status.get('providers')}")
        print(f"  /metrics -> {info}")
        for name, requests, concurrency, images in (
            ("JSON digit", payloads.json, 1, 1),
            ("JSON digit", payloads.json, 64, 1),
            ("batch of 32", payloads.batch, 4, 32),
        ):
            cell = measure(port, requests, concurrency, args)
            print(
                f"  {name:<12} c={concurrency:<3} {cell.rps:8.0f} req/s  {cell.rps * images:8.0f} images/s  "
                f"p50 {cell.percentile_ms(50):6.2f} ms  p99 {cell.percentile_ms(99):6.2f} ms  errors {cell.errors}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MNIST_DEVICE=cuda check on a GPU machine")
    parser.add_argument("--models", default="models")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(f"onnxruntime {ort.__version__}, available providers: {ort.get_available_providers()}")
    if CUDA not in ort.get_available_providers():
        print("CUDAExecutionProvider is not available: install onnxruntime-gpu and check the driver")
        return 2
    registry = Registry(args.models)
    version = registry.resolve()
    raw_model(registry.version_dir(version) / layout.ONNX_FILE)
    for device in ("cuda", "cpu"):
        service(Path(args.models), device, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
