"""Each version's Triton config.pbtxt, and the model-level one that follows production, as Triton reads them."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from registry import Registry, layout, triton
from tests.helpers import model_facts


def parsed(path: Path) -> model_config_pb2.ModelConfig:
    """Triton's own ModelConfig message: an unknown field or a bad value fails the parse."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def publish(registry: Registry) -> int:
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx-bytes")
    return registry.publish(staging, model_facts())


def test_every_version_carries_a_checksummed_config_from_its_metadata(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish(registry)
    assert triton.CONFIG_FILE in registry.verify(version)["files"]
    config = parsed(registry.version_dir(version) / triton.CONFIG_FILE)
    DataType = model_config_pb2.DataType
    assert (config.name, config.platform, config.max_batch_size) == ("mnist", "onnxruntime_onnx", 64)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("image", DataType.TYPE_FP32, [28, 28, 1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("probabilities", [10]), ("features", [64])]
    assert config.dynamic_batching.max_queue_delay_microseconds == triton.MAX_QUEUE_DELAY_US
    assert not config.HasField("version_policy")  # a version's own file says what it is, not what is served


def test_the_model_config_serves_production_through_promotions_and_rollbacks(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = publish(registry), publish(registry)
    model_config = registry.model_dir / triton.CONFIG_FILE
    assert not model_config.exists()  # nothing promoted: nothing for Triton to serve yet
    registry.promote(first)
    assert list(parsed(model_config).version_policy.specific.versions) == [first]
    registry.promote(second)
    assert list(parsed(model_config).version_policy.specific.versions) == [second]
    registry.promote(first, layout.STAGING)  # another alias leaves Triton's version alone
    assert list(parsed(model_config).version_policy.specific.versions) == [second]
    assert registry.rollback() == first
    assert list(parsed(model_config).version_policy.specific.versions) == [first]
    assert registry.versions() == [first, second]  # the file is no version and breaks no verification
    registry.verify(first)
