"""ModelManager and the ONNX backend without a trained model: not-ready states, refusals, device errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from registry import Registry, layout
from service.errors import DeviceUnavailable, ModelLoadError, ModelNotReady
from service.inference.backends.onnx_backend import OnnxBackend
from service.inference.model_manager import ModelManager
from service.settings import Settings
from tests.helpers import model_facts


def publish_garbage(root: Path) -> int:
    """A version whose checksums are right but whose model.onnx is not a model."""
    registry = Registry(root)
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"\x08\x07not an onnx graph")
    return registry.publish(staging, model_facts())


def test_empty_registry_is_not_ready_and_says_why(tmp_path: Path):
    async def scenario() -> None:
        manager = ModelManager(Settings(model_dir=tmp_path, poll_interval_s=0))
        await manager.start()  # must not raise: readiness reports it and the watcher retries
        try:
            assert not manager.ready
            assert "no model version" in (manager.not_ready_reason or "")
            assert manager.last_load_error is not None and manager.last_load_error["reason"] == "not_found"
            with pytest.raises(ModelNotReady):
                await manager.predict(np.zeros((1, 28, 28), dtype=np.float32))
            with pytest.raises(ModelLoadError):
                await manager.reload()
            status = manager.status()
            assert status["model_version"] is None and status["versions"] == []
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_broken_aliases_file_is_refused_as_such_not_as_a_missing_version(tmp_path: Path):
    """GET /models and mnist_model_load_failures_total said not_found, though no version was missing: the file
    the operator must fix is aliases.json, which the message names."""
    publish_garbage(tmp_path)
    (tmp_path / layout.MODEL_NAME / layout.ALIASES_FILE).write_text("{not json")

    async def scenario() -> None:
        manager = ModelManager(Settings(model_dir=tmp_path, poll_interval_s=0))
        await manager.start()
        try:
            error = manager.last_load_error
            assert error is not None and error["reason"] == "aliases"
            assert error["message"].endswith("aliases.json is not valid JSON; fix or delete it")
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_unloadable_model_is_refused_with_a_reason(tmp_path: Path):
    version = publish_garbage(tmp_path)

    async def scenario() -> None:
        manager = ModelManager(Settings(model_dir=tmp_path, poll_interval_s=0, guards=False, device="cpu"))
        await manager.start()
        try:
            assert not manager.ready
            error = manager.last_load_error
            assert error is not None and error["version"] == version and error["reason"] == "load"
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_cuda_on_a_cpu_only_machine_stops_start(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    publish_garbage(tmp_path)

    async def scenario() -> None:
        manager = ModelManager(Settings(model_dir=tmp_path, poll_interval_s=0, guards=False, device="cuda"))
        with pytest.raises(DeviceUnavailable, match="MNIST_DEVICE=cpu"):
            await manager.start()
        assert not manager.ready

    asyncio.run(scenario())


def test_onnx_with_external_data_is_refused(tmp_path: Path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["image", "w"], ["probabilities"]),
            helper.make_node("Identity", ["image"], ["features"]),
        ],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 4]),
        ],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").exists()
    with pytest.raises(ModelLoadError, match="external data"):
        OnnxBackend(path, model_facts().to_dict(), device="cpu")

    onnx.save_model(onnx.load(path), tmp_path / "inline.onnx")  # the same graph, self-contained, loads fine
    backend = OnnxBackend(tmp_path / "inline.onnx", model_facts().to_dict(), device="cpu")
    probs, features = backend.run(np.ones((2, 4), dtype=np.float32))
    assert probs.shape == (2, 4) and features.shape == (2, 4) and backend.device == "cpu"
    backend.close()


def publish_echo_model(root: Path, softening: float) -> int:
    """A version whose model answers its input back as features: what the service fed it is visible."""
    import dataclasses

    from onnx import TensorProto, helper, numpy_helper

    side = layout.IMAGE_SIDE
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "flat_shape"], [layout.OUTPUT_FEATURES]),
            helper.make_node("MatMul", [layout.OUTPUT_FEATURES, "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [layout.OUTPUT_PROBABILITIES]),
        ],
        "echo",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, side, side, 1])],
        [
            helper.make_tensor_value_info(layout.OUTPUT_PROBABILITIES, TensorProto.FLOAT, [None, 10]),
            helper.make_tensor_value_info(layout.OUTPUT_FEATURES, TensorProto.FLOAT, [None, side * side]),
        ],
        [
            numpy_helper.from_array(np.array([-1, side * side], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.full((side * side, 10), 0.01, dtype=np.float32), "w"),
        ],
    )
    registry = Registry(root)
    staging = registry.new_staging_dir()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (staging / layout.ONNX_FILE).write_bytes(model.SerializeToString())
    facts = model_facts()
    facts = dataclasses.replace(
        facts,
        preprocessing=dataclasses.replace(facts.preprocessing, softening=softening),
        outputs={
            **facts.outputs,
            layout.OUTPUT_FEATURES: dataclasses.replace(
                facts.outputs[layout.OUTPUT_FEATURES], shape=(None, side * side)
            ),
        },
    )
    return registry.publish(staging, facts)


@pytest.mark.parametrize("softening", [0.7, 0.0])
def test_every_input_reaches_the_model_softened_and_scaled_as_its_version_says(tmp_path: Path, softening: float):
    """A JSON digit, a picture's fitted digit, an OIP tensor: all reach the model through ``ModelManager.predict``,
    softened as the version's training digits were, then scaled."""
    from digits.softening import soften
    from tests.helpers import synthetic_digit

    publish_echo_model(tmp_path, softening)
    digits = np.stack([synthetic_digit(d) for d in (1, 7)]).astype(np.float32)

    async def scenario() -> list:
        manager = ModelManager(Settings(model_dir=tmp_path, poll_interval_s=0, guards=False, device="cpu"))
        await manager.start()
        try:
            assert manager.ready, manager.not_ready_reason
            return await manager.predict(digits, features=True)
        finally:
            await manager.stop()

    answers = asyncio.run(scenario())
    given = np.stack([np.asarray(answer.features).reshape(28, 28) for answer in answers])
    np.testing.assert_allclose(given, soften(digits, softening) / 255, atol=1e-6)
    assert (given != digits / 255).any() == (softening > 0)
