"""The gpu target on a machine without its CUDA base: buildah parses the whole Dockerfile and resolves
every stage the target needs, and the build must stop at the CUDA image and nowhere earlier. What it
cannot show (apt on Ubuntu, the onnxruntime-gpu wheel, CUDA at run time) is listed in docs/images.md."""

from __future__ import annotations

import re

import pytest

from tests.images import buildah
from tests.images.conftest import ROOT

pytestmark = pytest.mark.timeout(300)


def test_gpu_target_stops_only_at_its_missing_cuda_base(base_image: str) -> None:
    args = ["bud", *buildah.ISOLATION, "--pull=never", "--target", "gpu", "--build-arg", f"DEBIAN_IMAGE={base_image}"]
    result = buildah.run([*args, "--tag", "localhost/mnist-serving:gpu-test", str(ROOT)], timeout=300, check=False)
    output = result.stdout + result.stderr
    if result.returncode == 0:
        pytest.fail("the CUDA base is present on this machine: build and run the gpu image instead (docs/images.md)")
    steps = re.findall(r"^\[\d+/\d+\] STEP \d+/\d+: (.*)$", output, re.MULTILINE)
    assert steps, output[-3000:]
    assert re.fullmatch(r"FROM docker\.io/nvidia/cuda:\S+ AS gpu", steps[-1]), steps[-1]
    assert "image not known" in output or "not found" in output, output[-3000:]
