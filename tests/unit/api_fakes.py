"""Stand-ins for the HTTP-layer unit tests: a fake ModelManager and a fake image decoder.

They follow the interfaces service/api codes against, so the routes, limits
and error mapping are tested without a model (JSON validation is the real one).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import REGISTRY

from registry import Preprocessing
from service.errors import ModelNotReady, NoDigit, NotADigit, QueueFull, ServiceError, UnsupportedImageFormat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class FakePrediction:
    digit: int
    confidence: float
    probabilities: list[float]
    model_version: int


def fake_image_to_mnist(data: bytes, *, max_side: int, max_pixels: int, canvas: int, digit_box: int) -> np.ndarray:
    if data.startswith(b"SLOW"):
        time.sleep(1.0)
    if data.startswith(b"BOOM"):
        raise struct_error()
    if not data.startswith(PNG_MAGIC):
        raise UnsupportedImageFormat("only PNG and JPEG images are accepted")
    if data.endswith(b"BLANK"):
        raise NoDigit("blank image")
    image = np.zeros((28, 28), dtype=np.float32)
    image[4:24, 13:16] = 255.0
    return image


def struct_error() -> Exception:
    import struct

    return struct.error("unpack requires a buffer of 4 bytes")


@dataclass
class FakeManager:
    version: int = 3
    ready: bool = True
    not_ready_reason: str | None = None
    fail_with: ServiceError | None = None
    calls: list[int] = field(default_factory=list)
    started: bool = False
    stopped: bool = False
    reloads: list[Any] = field(default_factory=list)
    registry: Any = None

    @property
    def model_version(self) -> int | None:
        return self.version if self.ready else None

    @property
    def current(self) -> Any:
        """The served version as the real manager holds it in memory (None before the first load)."""
        backend = SimpleNamespace(name="onnx", device="cpu")
        return SimpleNamespace(version=self.version, backend=backend) if self.ready else None

    @property
    def preprocessing(self) -> Preprocessing:
        if not self.ready:  # as the real manager: no version served, no picture facts
            raise ModelNotReady(self.not_ready_reason or "no model version loaded")
        return Preprocessing(pixel_scale=1 / 255, canvas=28, digit_box=20)

    async def start(self) -> None:
        self.started = True

    async def check_loads(self, version: int) -> None:
        """Every version loads here (there is no model): the routes' other checks are what the tests look at."""

    async def stop(self) -> None:
        self.stopped = True

    async def predict(self, images: np.ndarray) -> list[FakePrediction | ServiceError]:
        assert images.dtype == np.float32 and images.shape[1:] == (28, 28)
        self.calls.append(images.shape[0])
        if self.fail_with is not None:
            raise self.fail_with
        out: list[FakePrediction | ServiceError] = []
        for image in images:
            if image.mean() > 200:  # an all-ink square plays the non-digit
                out.append(NotADigit("does not look like a handwritten digit"))
                continue
            probs = [0.01] * 10
            probs[7] = 0.91
            out.append(FakePrediction(7, 0.91234, probs, self.version))
        return out

    async def reload(self, ref: Any = None) -> int:
        self.reloads.append(ref)
        return self.version

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "model_version": self.version if self.ready else None,
            "backend": "onnx",
            "device": "cpu",
            "versions": [],
            "aliases": {},
            "last_load_error": None,
        }


QUEUE_FULL = QueueFull("queue is full", retry_after_s=2)


# ---- direct ASGI calls (no sockets) ----------------------------------------------
def scope_for(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, scope: dict[str, Any], receive: Any) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start.get("headers", [])), json.loads(body or b"null")


def rejections() -> float:
    """Refused inputs of every reason so far."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "mnist_rejected_inputs"
        for sample in metric.samples
        if sample.name == "mnist_rejected_inputs_total"
    )
