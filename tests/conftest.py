"""Fixtures shared by every tier.

``tiny_registry`` trains one real (tiny) model per session through the real
training CLI, so integration tests exercise the same artifacts users get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one quick-trained, verified, promoted version (read-only by convention)."""
    root = tmp_path_factory.mktemp("registry")
    subprocess.run(
        [sys.executable, "-m", "training", "--registry", str(root), "--quick"],
        check=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return root


@pytest.fixture()
def registry_copy(tiny_registry: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the tiny registry for tests that change it."""
    target = tmp_path / "registry"
    shutil.copytree(tiny_registry, target)
    return target
