"""Which onnxruntime execution providers to ask for, and which device we really got."""

from __future__ import annotations

from service.errors import DeviceUnavailable

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_CUDA_HELP = (
    "MNIST_DEVICE=cuda but onnxruntime offers no CUDAExecutionProvider (available: {available}). "
    "Install onnxruntime-gpu instead of onnxruntime (pip install 'mnist-serving[gpu]'), check the NVIDIA "
    "driver and CUDA libraries with nvidia-smi, or set MNIST_DEVICE=cpu (or auto) to serve on the CPU."
)


def select_providers(device: str, available: list[str]) -> list[str]:
    """Providers in priority order for ``MNIST_DEVICE`` (auto, cpu or cuda).

    CPU always comes last so that operators CUDA cannot run still have a home.
    """
    if device == "cpu":
        return [CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise DeviceUnavailable(_CUDA_HELP.format(available=", ".join(available) or "none"))
        return [CUDA, CPU]
    raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")


def device_in_use(session_providers: list[str]) -> str:
    """The device a session really runs on: onnxruntime silently drops CUDA when its libraries fail to load."""
    return "cuda" if session_providers and session_providers[0] == CUDA else "cpu"


def check_device(requested: str, session_providers: list[str]) -> str:
    """The device in use; refuse a session that fell back to CPU although CUDA was demanded."""
    actual = device_in_use(session_providers)
    if requested == "cuda" and actual != "cuda":
        raise DeviceUnavailable(
            "MNIST_DEVICE=cuda but onnxruntime could not start the CUDA provider (the CUDA/cuDNN libraries "
            "failed to load; see the onnxruntime warning above). Check the driver and the CUDA version that "
            "onnxruntime-gpu needs, or set MNIST_DEVICE=cpu."
        )
    return actual
