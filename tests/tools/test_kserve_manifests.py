"""deploy/kserve/: each InferenceService checked field by field against KServe's own schema.

The schema is the one KServe's Python SDK is generated from: its model classes (``kserve.models``) and, for
the Kubernetes types inside them (containers, volumes, probes), the Kubernetes client's. Every key must be
a field of its type, every value of the field's kind, so a typo or a misplaced field fails here rather
than when the API server refuses the manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kserve.models
import kubernetes.client
import pytest
import yaml

from registry import layout, triton

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
K8S = ROOT / "deploy" / "k8s" / "base"
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "ResourceQuantity": (str, int, float),
    "datetime": (str,),
}


def model_class(name: str) -> Any:
    found = getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)
    assert found is not None, f"no schema class {name}"
    return found


def schema_errors(value: Any, type_name: str, where: str) -> list[str]:
    """Every place where ``value`` is not a ``type_name`` as the SDK's generated classes define it."""
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {type(value).__name__}"]
    # The two generators spell containers differently: list[X] / dict(str, X) and List[X] / Dict[str, X].
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, match[1], f"{where}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        item_type = match[1] or match[2]
        return [e for k, item in value.items() for e in schema_errors(item, item_type, f"{where}.{k}")]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    field_by_key = {key: attr for attr, key in cls.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in field_by_key:
            errors.append(f"{where}.{key}: not a field of {type_name}")
        else:
            errors += schema_errors(item, cls.openapi_types[field_by_key[key]], f"{where}.{key}")
    return errors


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", sorted(KSERVE.glob("*.yaml")), ids=lambda p: p.name)
def test_each_inference_service_fits_kserves_schema(path: Path) -> None:
    doc = load(path)
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert schema_errors(doc, "V1beta1InferenceService", path.name) == []


def test_the_checker_catches_a_misplaced_field() -> None:
    doc = load(KSERVE / "inferenceservice.yaml")
    doc["spec"]["predictor"]["containers"][0]["volumeMount"] = []  # volumeMounts, misspelt
    doc["spec"]["predictor"]["minReplicas"] = "two"
    errors = schema_errors(doc, "V1beta1InferenceService", "isvc")
    assert any("volumeMount: not a field of V1Container" in e for e in errors)
    assert any("minReplicas: expected int" in e for e in errors)


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
