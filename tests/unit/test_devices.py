"""Execution-provider choice for MNIST_DEVICE, and the error that says how to fix a missing GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import DeviceUnavailable
from service.inference.backends.devices import CPU, CUDA, check_device, device_in_use, select_providers

WITH_GPU = ["TensorrtExecutionProvider", CUDA, CPU]
CPU_ONLY = ["AzureExecutionProvider", CPU]


def test_auto_takes_cuda_when_available():
    assert select_providers("auto", WITH_GPU) == [CUDA, CPU]


def test_auto_falls_back_to_cpu():
    assert select_providers("auto", CPU_ONLY) == [CPU]


def test_cpu_never_asks_for_cuda():
    assert select_providers("cpu", WITH_GPU) == [CPU]


def test_cuda_with_gpu():
    assert select_providers("cuda", WITH_GPU) == [CUDA, CPU]


def test_cuda_without_gpu_says_how_to_fix_it():
    with pytest.raises(DeviceUnavailable) as info:
        select_providers("cuda", CPU_ONLY)
    message = info.value.message
    assert "onnxruntime-gpu" in message and "driver" in message and "MNIST_DEVICE=cpu" in message
    assert info.value.code == "device_unavailable"


def test_unknown_device_is_refused():
    with pytest.raises(ValueError):
        select_providers("tpu", WITH_GPU)


def test_device_in_use_reads_the_session():
    assert device_in_use([CUDA, CPU]) == "cuda"
    assert device_in_use([CPU]) == "cpu"


def test_silent_cpu_fallback_is_refused_when_cuda_was_demanded():
    with pytest.raises(DeviceUnavailable):
        check_device("cuda", [CPU])
    assert check_device("auto", [CPU]) == "cpu"


def test_onnx_backend_with_cuda_on_this_machine_raises(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    from service.inference.backends.onnx_backend import OnnxBackend

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not even read: the device is checked first")
    metadata = {"input": {"name": "image"}, "outputs": {"probabilities": {"name": "p"}, "features": {"name": "f"}}}
    with pytest.raises(DeviceUnavailable, match="onnxruntime-gpu"):
        OnnxBackend(model, metadata, device="cuda")


def _linear_onnx(path: Path) -> dict:
    """A tiny real ONNX model with the registry's signature: image -> probabilities, features."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "shape"], ["features"]),
            helper.make_node("MatMul", ["features", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 28, 28, 1])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 784]),
        ],
        [weights, shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return {
        "input": {"name": "image"},
        "outputs": {"probabilities": {"name": "probabilities"}, "features": {"name": "features"}},
    }


def test_fixed_size_padding_on_cuda_returns_only_the_real_rows(tmp_path: Path):
    """On CUDA every call is padded to one shape (cuDNN re-searches algorithms on each new shape)."""
    import numpy as np

    from service.inference.backends.onnx_backend import OnnxBackend

    metadata = _linear_onnx(tmp_path / "model.onnx")
    plain = OnnxBackend(tmp_path / "model.onnx", metadata, device="cpu", max_batch_rows=16)
    padded = OnnxBackend(tmp_path / "model.onnx", metadata, device="cpu", max_batch_rows=16)
    padded._pad_rows = 16  # what a CUDA session gets; this machine has no GPU
    images = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    probs, features = padded.run(images)
    expected = plain.run(images)
    assert probs.shape == (3, 10) and features.shape == (3, 784)
    assert np.allclose(probs, expected[0]) and np.allclose(features, expected[1])
    assert plain._pad_rows is None  # CPU sessions run batches at their real size
