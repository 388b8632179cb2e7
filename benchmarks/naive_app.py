"""The image bench's naive reference: a FastAPI server as a tutorial writes it, same registry model.

Pillow decode -> grey -> resize to 28x28 -> onnxruntime of the version the
service serves, nothing else: no inversion, no centring, no guards, no limits.
Fast, and mostly wrong on pictures people send (issue 13); the image bench
reports its throughput and how many of its answers are right next to the
service's. onnxruntime gets the service's thread settings (one intra- and one
inter-op thread), so the comparison is about the work, not thread counts.

    MNIST_MODEL_DIR=models python benchmarks/naive_app.py --port 8002 [--workers 2]
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: registry and the server code

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, UploadFile
from PIL import Image

from registry import Registry, layout

MODEL: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    registry = Registry(Path(os.environ.get("MNIST_MODEL_DIR", "models")))
    version = registry.resolve(None)  # what the service serves by default: production, else the newest
    facts = registry.model_metadata(version)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    onnx = str(registry.version_dir(version) / layout.ONNX_FILE)
    MODEL["session"] = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    MODEL["input"], MODEL["scale"] = facts.input.name, facts.preprocessing.pixel_scale
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
async def predict(file: UploadFile) -> dict[str, Any]:
    data = await file.read()
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28))
    x = np.asarray(image, dtype=np.float32)[None, :, :, None] * MODEL["scale"]
    (probs,) = MODEL["session"].run([layout.OUTPUT_PROBABILITIES], {MODEL["input"]: x})
    return {"digit": int(probs[0].argmax()), "confidence": float(probs[0].max())}


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


if __name__ == "__main__":
    from ceiling_app import serve_here  # type: ignore[import-not-found]  (a sibling script, not a package)

    serve_here("naive_app:app", "Naive FastAPI digit server (image bench reference).")
