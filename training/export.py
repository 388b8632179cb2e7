"""Export to SavedModel and ONNX with one fixed signature, and prove the runtimes agree."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from registry import layout
from training.failures import ParityError

ONNX_OPSET = 17
PARITY_ATOL = 1e-4
INPUT_SPEC = [tf.TensorSpec([None, layout.IMAGE_SIDE, layout.IMAGE_SIDE, 1], tf.float32, name=layout.INPUT_NAME)]


def _serving_fn(model: keras.Model) -> tf.types.experimental.PolymorphicFunction:
    @tf.function(input_signature=INPUT_SPEC)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probs, features = model(image, training=False)
        return {layout.OUTPUT_PROBABILITIES: probs, layout.OUTPUT_FEATURES: features}

    return serve


def export_savedmodel(model: keras.Model, path: Path) -> None:
    """Keras 3 export with named outputs (model.export would call them output_0/1)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=_serving_fn(model), input_signature=INPUT_SPEC)
    archive.write_out(str(path), verbose=False)


def export_onnx(model: keras.Model, path: Path) -> None:
    # from_keras fails on Keras 3 models (KeyError: 'keras_tensor_N'); a
    # tf.function with a fixed TensorSpec converts cleanly.
    tf2onnx.convert.from_function(
        _serving_fn(model), input_signature=INPUT_SPEC, opset=ONNX_OPSET, output_path=str(path)
    )


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, feats = session.run([layout.OUTPUT_PROBABILITIES, layout.OUTPUT_FEATURES], {layout.INPUT_NAME: x})
    return probs, feats


def check_parity(model: keras.Model, savedmodel_dir: Path, onnx_path: Path, x: np.ndarray) -> dict[str, float]:
    """Same digits through all three runtimes; raise ParityError on any disagreement."""
    keras_probs = np.asarray(model.predict(x, batch_size=512, verbose=0)[0])
    signature = tf.saved_model.load(str(savedmodel_dir)).signatures["serving_default"]
    sm_probs = np.concatenate(
        [
            signature(**{layout.INPUT_NAME: tf.constant(x[i : i + 512])})[layout.OUTPUT_PROBABILITIES].numpy()
            for i in range(0, len(x), 512)
        ]
    )
    onnx_probs, _ = run_onnx(onnx_session(onnx_path), x)
    report = {
        "images": len(x),
        "max_abs_diff_savedmodel": float(np.abs(keras_probs - sm_probs).max()),
        "max_abs_diff_onnx": float(np.abs(keras_probs - onnx_probs).max()),
        "argmax_mismatches": int(
            (keras_probs.argmax(1) != sm_probs.argmax(1)).sum() + (keras_probs.argmax(1) != onnx_probs.argmax(1)).sum()
        ),
    }
    if (
        report["max_abs_diff_savedmodel"] > PARITY_ATOL
        or report["max_abs_diff_onnx"] > PARITY_ATOL
        or report["argmax_mismatches"]
    ):
        raise ParityError(f"runtimes disagree on {len(x)} test digits: {report}")
    return report


def onnx_latency_us(onnx_path: Path, x: np.ndarray, repeats: int = 30) -> dict[str, float]:
    """Median onnxruntime CPU microseconds per image on one thread, batch 1 and 64."""
    session = onnx_session(onnx_path, threads=1)
    out: dict[str, float] = {}
    for batch in (1, 64):
        xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
        run_onnx(session, xb)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_onnx(session, xb)
            times.append(time.perf_counter() - start)
        out[f"batch_{batch}"] = round(statistics.median(times) / batch * 1e6, 2)
    return out
