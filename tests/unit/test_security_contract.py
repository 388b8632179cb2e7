"""Security facts of the code itself, checked cheaply: what no module calls (what the ONNX path imports is checked in
a fresh interpreter by tests/integration/test_onnx_path_imports.py).

Registry version ids (tests/unit/test_registry.py) and ONNX external data (tests/unit/test_model_manager.py)
are covered where those modules are tested.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Everything the running service executes: its own package, the registry it reads models through and the
# digit maths it shares with training.
SCANNED = [ROOT / "service", ROOT / "registry", ROOT / "digits"]
# Who may not import whom: the shared packages stay free of the service, training and the frameworks, so
# either side can use them; training never imports the service.
FRAMEWORKS = {"tensorflow", "keras", "tf2onnx", "fastapi", "starlette", "pydantic", "pydantic_settings", "uvicorn"}
FORBIDDEN_IMPORTS = {
    "registry": {"service", "training", "digits", "PIL", *FRAMEWORKS},  # numpy only
    "digits": {"service", "training", *FRAMEWORKS},
    "training": {"service"},
}
# Deserialisers that run code from the bytes they read.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_KEYWORDS = {("safe_mode", False), ("allow_pickle", True)}
UNSAFE_CALLS = {"eval", "exec"}


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in SCANNED:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


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


def imported_roots(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in the tree, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_package_boundaries(package: str) -> None:
    paths = sorted((ROOT / package).rglob("*.py"))
    assert paths, f"{package}/ has no modules: the scan would prove nothing"
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {root}"
        for path in paths
        for line, root in imported_roots(ast.parse(path.read_text(), filename=str(path)))
        if root in FORBIDDEN_IMPORTS[package]
    ]
    assert not found, "\n".join(found)
