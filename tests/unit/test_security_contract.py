"""Security facts of the code itself, checked cheaply: what the ONNX path imports, and what no module calls.

Registry version ids (tests/unit/test_registry.py) and ONNX external data (tests/unit/test_model_manager.py)
are covered where those modules are tested.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Everything the running service executes: its own package and the registry it reads models through.
SCANNED = [ROOT / "service", ROOT / "registry"]
# Deserialisers that run code from the bytes they read.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_KEYWORDS = {("safe_mode", False), ("allow_pickle", True)}
UNSAFE_CALLS = {"eval", "exec"}


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in SCANNED:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def test_the_onnx_path_never_imports_tensorflow() -> None:
    """A fresh interpreter builds the app with the real manager: TensorFlow must stay out of sys.modules."""
    code = (
        "import json, sys, tempfile\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        "import service.inference.model_manager, service.inference.loaded_model, service.inference.backends.onnx_backend\n"
        "create_app(Settings(model_dir=tempfile.mkdtemp(), backend='onnx'))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("folder", SCANNED, ids=lambda p: p.name)
def test_no_unsafe_deserialisation(folder: Path) -> None:
    found = []
    for path, tree in sources():
        if not path.is_relative_to(folder):
            continue
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                found += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if isinstance(kw.value, ast.Constant) and (kw.arg, kw.value.value) in UNSAFE_KEYWORDS:
                        found.append(f"{where} passes {kw.arg}={kw.value.value}")
                if isinstance(node.func, ast.Name) and node.func.id in UNSAFE_CALLS:
                    found.append(f"{where} calls {node.func.id}")
    assert not found, "\n".join(found)


def test_the_scan_sees_the_backends() -> None:
    """Guard against a vacuous scan: the model-loading modules are among the parsed files."""
    names = {path.relative_to(ROOT).as_posix() for path, _ in sources()}
    assert {"service/inference/backends/onnx_backend.py", "service/inference/backends/savedmodel_backend.py"} <= names
