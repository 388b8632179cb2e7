"""Kubernetes manifests: both overlays render, validate against a pinned Kubernetes, and keep
the contract (security context, probes, read-only registry, GPU settings, real MNIST_ keys).

kubernetes-validate carries schemas for built-in kinds only. The ServiceMonitor (a Prometheus
Operator CRD) is therefore checked here by hand: its selector must find the Service and its
endpoint must name a real Service port and the /metrics path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # oldest release still widely run with autoscaling/v2 + policy/v1
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def kubectl() -> str:
    found = Path(sys.executable).parent / "kubectl"
    return str(found) if found.exists() else "kubectl"


def render(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / "overlays" / request.param)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            specs.append((doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return specs


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment", "mnist-serving")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    name = server_container(docs)["envFrom"][0]["configMapRef"]["name"]
    return one(docs, "ConfigMap", name)["data"]


def test_overlay_renders_every_expected_kind(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    kinds = {d["kind"] for d in docs}
    expected = {"Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    expected |= {"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "CronJob"}
    assert expected <= kinds


def test_builtin_objects_validate_strictly(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_service_monitor_structure(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "mnist-serving")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "ServiceMonitor selects no Service"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]


def test_every_container_is_locked_down(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    specs = pod_specs(docs)
    assert len(specs) >= 2
    for name, spec in specs:
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] > 0, name
        assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"] + spec.get("initContainers", []):
            ctx = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: read-only root needs a writable /tmp"


def test_server_probes_and_shutdown(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    deployment = one(docs, "Deployment", "mnist-serving")
    spec = deployment["spec"]["template"]["spec"]
    container = server_container(docs)
    port = container["ports"][0]
    assert port["containerPort"] == Settings().port
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in {port["name"], port["containerPort"]}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) < spec["terminationGracePeriodSeconds"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["topologySpreadConstraints"] and spec["affinity"]["podAntiAffinity"]
    assert spec["enableServiceLinks"] is False, "service links inject MNIST_SERVING_* variables"


def test_registry_is_mounted_read_only_from_a_shared_claim(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    spec = one(docs, "Deployment", "mnist-serving")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in server_container(docs)["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["readOnly"] is True
    claim = volumes[mount["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    pvc = one(docs, "PersistentVolumeClaim", claim["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert config_data(docs)["MNIST_MODEL_DIR"] == "/models"
    # the training CronJob writes into the same claim
    train = one(docs, "CronJob", "mnist-train")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    train_volumes = {v["name"]: v for v in train["volumes"]}
    train_mount = next(m for m in train["containers"][0]["volumeMounts"] if m["mountPath"] == "/models")
    assert not train_mount.get("readOnly")
    assert train_volumes[train_mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["claimName"]
    assert train["containers"][0]["args"][:2] == ["--registry", "/models"]


def test_admin_token_comes_from_an_optional_secret(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    env = {e["name"]: e for e in server_container(docs).get("env", [])}
    ref = env["MNIST_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    assert "MNIST_ADMIN_TOKEN" not in config_data(docs)


def test_settings_keys_are_real_settings_fields(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    known = {f"MNIST_{name.upper()}" for name in Settings.model_fields}
    keys = set(config_data(docs)) | {e["name"] for e in server_container(docs).get("env", [])}
    assert all(k.startswith("MNIST_") for k in keys), keys
    assert keys <= known, f"not Settings fields: {sorted(keys - known)}"


def test_configmap_values_validate_as_settings(overlay: tuple[str, list[dict[str, Any]]], monkeypatch) -> None:
    _, docs = overlay
    for name in list(os.environ):
        if name.startswith("MNIST_"):
            monkeypatch.delenv(name)
    for key, value in config_data(docs).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.port == server_container(docs)["ports"][0]["containerPort"]


def test_gpu_overlay_requests_a_gpu() -> None:
    docs = render(K8S / "overlays" / "gpu")
    container = server_container(docs)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert config_data(docs)["MNIST_DEVICE"] == "cuda"
    assert container["image"].endswith("-gpu")
    spec = one(docs, "Deployment", "mnist-serving")["spec"]["template"]["spec"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["nodeSelector"]


def test_cpu_overlay_has_no_gpu() -> None:
    docs = render(K8S / "overlays" / "cpu")
    container = server_container(docs)
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert config_data(docs)["MNIST_DEVICE"] == "cpu"


def test_custom_metric_hpa_component_renders(tmp_path: Path) -> None:
    # Components are opt-in; render the cpu overlay with it the way deploy/README.md shows.
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/cpu]\ncomponents: [{rel}/components/hpa-queue-wait]\n"
    )
    docs = render(tmp_path)
    hpa = one(docs, "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    pod_metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert pod_metrics == {"mnist_queue_wait_seconds_p95", "mnist_requests_in_flight"}
    rules = yaml.safe_load((K8S / "components" / "hpa-queue-wait" / "prometheus-adapter-rules.yaml").read_text())
    assert {r["name"]["as"] for r in rules["rules"]} == pod_metrics
