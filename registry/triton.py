"""NVIDIA Triton's ``config.pbtxt``, generated from a version's metadata, so Triton can serve the registry as is.

Each version carries its own (``mnist/<version>/config.pbtxt``, written at publish and checksummed with the
other files): what that version is, for Triton. Triton reads the model's configuration one level up,
``mnist/config.pbtxt``: the registry writes that one whenever the ``production`` alias moves, with a
version policy naming the production version, so a Triton that polls the repository follows promotions
and rollbacks as the service does. Written by hand in protobuf text format: the registry needs no
protobuf; tests parse it with the ``ModelConfig`` message that ships with tritonclient.
"""

from __future__ import annotations

from registry.metadata import ModelMetadata, Shape

CONFIG_FILE = "config.pbtxt"
PLATFORM = "onnxruntime_onnx"  # the version's model.onnx (Triton's default file name for this platform)
# The most images in one model call, and the longest a request waits for companions: the service's own
# defaults (MNIST_MAX_BATCH_SIZE rows, MNIST_MAX_BATCH_DELAY_MS), so both engines batch alike.
MAX_BATCH_SIZE = 64
MAX_QUEUE_DELAY_US = 2000
DATA_TYPES = {"float32": "TYPE_FP32"}


def _dims(shape: Shape | None, rank: int) -> str:
    """Triton's dims leave the batch dimension out when max_batch_size > 0; -1 is a free dimension."""
    dims = [-1] * rank if shape is None else [-1 if d is None else int(d) for d in shape[1:]]
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor(name: str, data_type: str, dims: str) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: {data_type}\n    dims: {dims}\n  }}'


def config_text(facts: ModelMetadata, *, serve_version: int | None = None) -> str:
    """The config of ``facts``'s model; ``serve_version`` adds the version policy of the model-level file."""
    data_type = DATA_TYPES[facts.input.dtype]
    outputs = ",\n".join(_tensor(spec.name, "TYPE_FP32", _dims(spec.shape, 1)) for spec in facts.outputs.values())
    lines = [
        "# Generated from metadata.json by registry/triton.py; NVIDIA Triton serves this registry as is.",
        f'name: "{facts.name}"',
        f'platform: "{PLATFORM}"',
        f"max_batch_size: {MAX_BATCH_SIZE}",
    ]
    if serve_version is not None:
        lines.append(f"version_policy: {{ specific: {{ versions: [ {serve_version} ] }} }}")
    lines += [
        f"input [\n{_tensor(facts.input.name, data_type, _dims(facts.input.shape, 3))}\n]",
        f"output [\n{outputs}\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n}}",
    ]
    return "\n".join(lines) + "\n"
