"""A real trained version's config.pbtxt fits its model.onnx as Triton would load it (names, types, dims)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from registry import Registry, layout, triton

ONNX_TYPES = {"tensor(float)": model_config_pb2.DataType.TYPE_FP32}


def test_the_config_matches_the_onnx_graph(tiny_registry: Path) -> None:
    registry = Registry(tiny_registry)
    version = registry.resolve(None)
    folder = registry.version_dir(version)
    config = text_format.Parse((folder / triton.CONFIG_FILE).read_text(), model_config_pb2.ModelConfig())
    session = onnxruntime.InferenceSession(str(folder / layout.ONNX_FILE), providers=["CPUExecutionProvider"])

    def graph(tensors: list) -> list[tuple[str, int, list[int]]]:
        # Triton's dims leave the batch out; a free dimension is -1 on both sides.
        return [(t.name, ONNX_TYPES[t.type], [d if isinstance(d, int) else -1 for d in t.shape[1:]]) for t in tensors]

    assert graph(session.get_inputs()) == [(i.name, i.data_type, list(i.dims)) for i in config.input]
    assert sorted(graph(session.get_outputs())) == sorted((o.name, o.data_type, list(o.dims)) for o in config.output)
    model_level = text_format.Parse(
        (registry.model_dir / triton.CONFIG_FILE).read_text(), model_config_pb2.ModelConfig()
    )
    assert list(model_level.version_policy.specific.versions) == [version]  # training promoted it
