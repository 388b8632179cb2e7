"""deploy/kserve/: each InferenceService checked field by field against KServe's own schema.

The schema is the one KServe's Python SDK is generated from: its model classes (``kserve.models``) and, for
the Kubernetes types inside them (containers, volumes, probes), the Kubernetes client's
(``tests/tools/kserve_schema.py``, run in a child process). Every key must be a field of its type, every
value of the field's kind, so a typo or a misplaced field fails here rather than when the API server
refuses the manifest.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from registry import layout, triton
from tests.deploy_helpers import rendered

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
K8S = ROOT / "deploy" / "k8s" / "base"
CHECKER = Path(__file__).with_name("kserve_schema.py")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def schema_errors(documents: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    done = subprocess.run(
        [sys.executable, str(CHECKER)],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_each_inference_service_fits_kserves_schema_and_the_checker_catches_mistakes() -> None:
    paths = sorted(KSERVE.glob("*.yaml"))
    documents = [(path.name, load(path)) for path in paths]
    assert len(documents) == 2
    for _, doc in documents:
        assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    broken = copy.deepcopy(load(KSERVE / "inferenceservice.yaml"))
    broken["spec"]["predictor"]["containers"][0]["volumeMount"] = []  # volumeMounts, misspelt
    broken["spec"]["predictor"]["minReplicas"] = "two"
    *found, mistakes = schema_errors([*documents, ("broken", broken)])
    assert found == [[] for _ in documents], dict(zip(paths, found, strict=True))
    assert any("volumeMount: not a field of V1Container" in e for e in mistakes), mistakes
    assert any("minReplicas: expected int" in e for e in mistakes), mistakes


def test_both_serve_the_registry_pvc_of_deploy_k8s() -> None:
    claim = load(K8S / "pvc.yaml")["metadata"]["name"]
    ours = load(KSERVE / "inferenceservice.yaml")["spec"]["predictor"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in ours["volumes"] if "persistentVolumeClaim" in v] == [claim]
    (container,) = ours["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    model = load(KSERVE / "inferenceservice-triton.yaml")["spec"]["predictor"]["model"]
    assert model["storageUri"] == f"pvc://{claim}/" and model["protocolVersion"] == "v2"
    # Triton's model repository is the PVC's root: the model folder and its config are the registry's own.
    assert (layout.MODEL_NAME, triton.CONFIG_FILE) == ("mnist", "config.pbtxt")


def test_the_settings_it_reads_exist_by_that_name_once_deploy_k8s_is_applied() -> None:
    """Applied on its own, the InferenceService names deploy/k8s's objects as written: a ConfigMap that only exists
    with a content hash appended would leave its pods in CreateContainerConfigError."""
    (container,) = load(KSERVE / "inferenceservice.yaml")["spec"]["predictor"]["containers"]
    wanted = {source["configMapRef"]["name"] for source in container["envFrom"]}
    applied = rendered("cpu")
    names = {d["metadata"]["name"] for d in applied if d["kind"] == "ConfigMap"}
    assert wanted and wanted <= names, (wanted, names)
    # The same settings the Deployment reads.
    (server,) = [d for d in applied if d["kind"] == "Deployment" and d["metadata"]["name"] == "mnist-serving"]
    (ours,) = [c for c in server["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    data = {d["metadata"]["name"]: d["data"] for d in applied if d["kind"] == "ConfigMap"}
    (deployments,) = {source["configMapRef"]["name"] for source in ours["envFrom"]}
    assert all(data[name] == data[deployments] for name in wanted)
