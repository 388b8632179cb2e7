"""The Dockerfile's contract, checked without a Docker engine: a parse of the stages (hadolint runs in
tests/tools/test_hadolint.py).

The serving image must run as non-root, probe /health/live, expose the service's default port,
and install only the `serve` extra (never TensorFlow).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (FROM ... AS name), global ARGs under ''."""
    result: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for word, rest in instructions(text):
        if word == "FROM":
            match = re.search(r"\bAS\s+(\S+)$", rest, re.IGNORECASE)
            current = match.group(1) if match else rest
            result[current] = [(word, rest)]
        else:
            result[current].append((word, rest))
    return result


def global_args(text: str) -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in stages(text)[""] if word == "ARG" and "=" in rest)


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def parent(stage: list[tuple[str, str]]) -> str:
    return stage[0][1].split()[0]


def serving_lineage(all_stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions preceded by its parents' (the image it really produces)."""
    chain = []
    while name in all_stages:
        chain = all_stages[name] + chain
        name = parent(all_stages[name])
    return chain


def last(stage: list[tuple[str, str]], word: str) -> str | None:
    found = [rest for w, rest in stage if w == word]
    return found[-1] if found else None


TEXT = DOCKERFILE.read_text()
STAGES = stages(TEXT)
ARGS = global_args(TEXT)


def test_ignored_hadolint_rules_are_justified() -> None:
    lines = TEXT.splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            justification = lines[number - 1].strip()
            assert justification.startswith("#") and len(justification) > 20, f"unjustified ignore: {line}"


def test_default_target_is_the_serving_image() -> None:
    final = list(STAGES)[-1]
    assert parent(STAGES[final]) == "serve"


@pytest.mark.parametrize("target", ["serve", "baked", "gpu", "train"])
def test_runtime_targets_run_as_non_root(target: str) -> None:
    user = last(serving_lineage(STAGES, target), "USER")
    assert user, f"{target} has no USER"
    uid = expand(user, ARGS).split(":")[0]
    assert uid not in {"0", "root"}, f"{target} runs as {uid}"


@pytest.mark.parametrize("target", ["serve", "gpu"])
def test_serving_targets_probe_liveness_and_expose_the_default_port(target: str) -> None:
    lineage = serving_lineage(STAGES, target)
    healthcheck = last(lineage, "HEALTHCHECK")
    assert healthcheck and "/health/live" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck, "slim images carry neither"
    assert last(lineage, "EXPOSE") == str(Settings().port)
    cmd = json.loads(last(lineage, "CMD") or "[]")
    assert cmd[:3] == ["python", "-m", "service"]
    env = " ".join(rest for word, rest in lineage if word == "ENV")
    assert "MNIST_MODEL_DIR=/models" in env
    assert f"MNIST_PORT={Settings().port}" in env


def test_gpu_target_uses_cuda() -> None:
    gpu = STAGES["gpu"]
    assert "cuda" in expand(parent(gpu), ARGS)
    env = " ".join(rest for word, rest in gpu if word == "ENV")
    assert "MNIST_DEVICE=cuda" in env
    assert any("onnxruntime-gpu" in rest for word, rest in gpu if word == "RUN")


def test_serving_image_installs_only_the_serve_extra() -> None:
    # The serve stage copies its virtualenv from build-serve (on serve-deps): all must stay free of TensorFlow.
    for name in ("serve-deps", "build-serve", "serve", "gpu"):
        runs = " ".join(rest for word, rest in STAGES[name] if word == "RUN").lower()
        assert "tensorflow" not in runs and ".[train" not in runs, name
    build_runs = " ".join(rest for word, rest in STAGES["build-serve"] if word == "RUN")
    assert '".[serve]"' in build_runs and "-c constraints.txt" in build_runs
    copies = [rest for word, rest in STAGES["serve"] if word == "COPY"]
    assert any("--from=build-serve" in c for c in copies)


def test_train_target_runs_the_training_cli() -> None:
    lineage = serving_lineage(STAGES, "train")
    assert json.loads(last(lineage, "ENTRYPOINT") or "[]") == ["python", "-m", "training"]
    runs = " ".join(rest for word, rest in STAGES["train"] if word == "RUN")
    assert '".[train]"' in runs


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    # Allow-list: everything is excluded first, then only the sources the images install come back.
    assert patterns[0] == "**"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed <= {
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "registry",
        "digits",
        "service",
        "training",
        "models/README.md",
    }
    for excluded in (".venv", ".git", "models", "tests"):
        assert excluded not in allowed
