"""Helpers for the deployment and observability tests.

Reading the PromQL expressions of the dashboard and the alert rules, pulling
metric names out of them, rendering the Kubernetes Deployment's server
container and environment, staging what the serving image holds, and starting
the real service as a subprocess with an exact environment (the Kubernetes
test needs env, user and read-only registry under its own control, so it
cannot share a generic fixture).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.server import launch, terminate

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "mnist-alerts.yml"

# Series Prometheus itself creates: never exported by the service, legitimately queried.
PROMETHEUS_SYNTHETIC = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
    | {"inf", "nan", "le"}
)
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def system_tool(name: str) -> str:
    """Path of a Debian-installed tool (promtool, prometheus); a failure in CI, a skip elsewhere."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found: install Debian's `prometheus` package (`make system-deps`)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def dashboard_expressions(path: Path = DASHBOARD) -> list[str]:
    dashboard = json.loads(path.read_text())
    exprs = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("expr"):
                exprs.append(target["expr"])
    return exprs


def rule_expressions(path: Path = RULES) -> tuple[list[str], set[str]]:
    """Every rule expression, and the names of the recording rules (valid series names too)."""
    groups = yaml.safe_load(path.read_text())["groups"]
    exprs, recorded = [], set()
    for group in groups:
        for rule in group["rules"]:
            exprs.append(rule["expr"])
            if "record" in rule:
                recorded.add(rule["record"])
    return exprs, recorded


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: a small PromQL scanner, enough for our own files.

    Strings, label matchers, ranges and grouping clauses are removed first; what is left that
    looks like an identifier and is not a function call or keyword is a metric name.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def base_name(name: str) -> str:
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported_names(exposition: str) -> set[str]:
    """Metric family names and sample names in a /metrics text (counters with and without _total)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            if kind == "counter" and not family.endswith("_total"):
                names.add(family + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def unknown_names(exprs: list[str], exported: set[str], recorded: set[str]) -> dict[str, set[str]]:
    """Per expression, the names that are neither exported, recorded, nor Prometheus' own."""
    problems: dict[str, set[str]] = {}
    for expr in exprs:
        bad = {
            n
            for n in metric_names(expr)
            if n not in PROMETHEUS_SYNTHETIC
            and n not in recorded
            and n not in exported
            and base_name(n) not in exported
        }
        if bad:
            problems[expr] = bad
    return problems


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, status: int, deadline_s: float, proc: subprocess.Popen | None = None) -> tuple[int, bytes]:
    """Poll ``url`` until it answers ``status``; the last answer (or 0) when time runs out."""
    last: tuple[int, bytes] = (0, b"")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            last = http_get(url, timeout=2)
            if last[0] == status:
                return last
        time.sleep(0.2)
    return last


def service_log(proc: subprocess.Popen) -> str:
    """The tail of what a ``service_process`` printed so far, for assertion messages."""
    path = getattr(proc, "log_path", None)
    return Path(path).read_text(errors="replace")[-4000:] if path else ""


def serve_requirements() -> list[str]:
    """What ``pip install ".[serve]"`` installs in the image: the project's dependencies and its serve extra,
    read from pyproject.toml (the installed metadata is as old as the last ``make install``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["serve"]]


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions those requirements pull in, dependencies of dependencies included."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    todo = [(text, "") for text in requirements]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        try:
            found[name] = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} (needed by the serve extra) is not installed: run `make install`")
        todo += [(sub, e) for sub in found[name].requires or [] for e in ("", *requirement.extras)]
    return list(found.values())


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no bytes copied when both sit on one filesystem
    except OSError:
        shutil.copy2(source, target)


def stage_serving_image(target: Path) -> Path:
    """A virtual environment at ``target`` holding what the serve image's /opt/venv holds: our packages and
    the serve extra's distributions (hard links into this environment where possible). Returns its python.

    The service then needs nothing from the checkout or from this environment, which may sit in a folder
    only their owner can read (a clone in a ``mktemp -d`` folder, a .venv inside it): the unprivileged user
    the Kubernetes test runs the service as reads only ``target``, as the pod reads only its image.
    """
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    (site,) = (target / "lib").glob("python3*/site-packages")
    for dist in _closure(serve_requirements()):
        if dist.files is None:
            pytest.fail(f"{dist.metadata['Name']} lists no files (no RECORD): cannot stage it")
        for name in dist.files:
            source = Path(str(dist.locate_file(name)))
            if name.parts[0] != ".." and source.is_file():  # "../../bin/x" entries are console scripts
                _link_or_copy(source, site / name)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        package = ROOT / pattern.rstrip("*")
        shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    return target / "bin" / "python"


@contextlib.contextmanager
def service_process(
    env: dict[str, str],
    args: list[str] | None = None,
    prefix: list[str] | None = None,
    cwd: Path = ROOT,
    python: Path | str = sys.executable,
) -> Iterator[subprocess.Popen]:
    """``python -m service`` with exactly ``env``; output goes to a log file read by ``service_log``."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mnist-service-{os.getpid()}-{time.time_ns()}.log"
    cmd = [*(prefix or []), str(python), "-m", "service", *(args or [])]
    proc = launch(cmd, env, log_path, cwd)
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        terminate(proc, timeout_s=20)
        log_path.unlink(missing_ok=True)


@functools.cache
def rendered(overlay: str = "cpu") -> tuple[dict[str, Any], ...]:
    """The overlay's objects as kubectl applies them (kustomize), rendered once per session."""
    kubectl = Path(sys.executable).parent / "kubectl"
    out = subprocess.run(
        [str(kubectl) if kubectl.exists() else "kubectl", "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def rendered_server(overlay: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment's pod spec and its `server` container, with ``resolvedEnv``: the ConfigMap (envFrom),
    then the container's env, as the kubelet hands them to the process."""
    docs = rendered(overlay)
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mnist-serving")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "server")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            # Only the optional admin-token Secret is referenced; absent, Kubernetes leaves it unset.
            assert item["valueFrom"]["secretKeyRef"]["optional"] is True, item
    return pod, {**container, "resolvedEnv": env}


def rendered_server_env(overlay: str = "cpu") -> dict[str, str]:
    """The environment the Deployment gives the server container."""
    _, container = rendered_server(overlay)
    assert "command" not in container and "args" not in container, "the tests assume the image's CMD"
    return dict(container["resolvedEnv"])


def rendered_cronjob(name: str, overlay: str = "cpu") -> dict[str, Any]:
    """The (first) container of a CronJob's pod template."""
    job = next(d for d in rendered(overlay) if d["kind"] == "CronJob" and d["metadata"]["name"] == name)
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
