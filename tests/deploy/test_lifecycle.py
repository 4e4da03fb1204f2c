"""Install, upgrade, uninstall: the CRDs (and with them every pool) survive `helm
uninstall`, an upgrade that stops installing them, and an Argo CD sync with pruning of
either the chart or the kustomize overlays; everything else goes as it should."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.chart import render
from tests.deploy.lifecycle import (
    argocd_app_deletion_deletes,
    argocd_prunes,
    helm_uninstall_deletes,
    helm_upgrade_deletes,
    key,
)
from tests.deploy.test_kustomize import MANIFESTS, kustomize

CRD = "CustomResourceDefinition"
MODELFLEET_CRDS = {
    "modelpools.modelfleet.io",
    "reservations.modelfleet.io",
    "routingpolicies.modelfleet.io",
}


def crd_names(objects) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == CRD}


def test_helm_uninstall_deletes_everything_but_the_crds():
    manifest = render().objects()
    assert crd_names(manifest) == MODELFLEET_CRDS  # upgraded with the release
    deleted = helm_uninstall_deletes(manifest)
    assert not crd_names(deleted)
    assert {key(o) for o in deleted} == {key(o) for o in manifest if o["kind"] != CRD}


def test_with_crds_keep_false_helm_uninstall_deletes_the_crds_too():
    manifest = render({"crds": {"install": True, "keep": False}}).objects()
    assert crd_names(helm_uninstall_deletes(manifest)) == MODELFLEET_CRDS


def test_an_upgrade_that_stops_installing_the_crds_keeps_them():
    before = render().objects()
    after = render({"crds": {"install": False, "keep": True}}).objects()
    assert not crd_names(helm_upgrade_deletes(before, after))


@pytest.mark.parametrize("desired", ["nothing", "chart without crds"])
def test_an_argocd_sync_with_pruning_of_the_chart_keeps_the_crds(desired):
    live = render().objects()
    wanted = (
        [] if desired == "nothing" else render({"crds": {"install": False, "keep": True}}).objects()
    )
    pruned = argocd_prunes(live, wanted)
    assert not crd_names(pruned)
    if desired == "nothing":
        assert {key(o) for o in pruned} == {key(o) for o in live if o["kind"] != CRD}


def test_the_argocd_application_prunes_but_never_the_crds_of_its_overlay():
    applications = list(
        yaml.safe_load_all((MANIFESTS / "argocd" / "applications.yaml").read_text())
    )
    operator_app = next(a for a in applications if a["metadata"]["name"] == "modelfleet")
    assert operator_app["spec"]["syncPolicy"]["automated"]["prune"] is True
    overlay = operator_app["spec"]["source"]["path"].removeprefix("manifests/")
    live = list(kustomize(overlay))
    assert crd_names(live) >= MODELFLEET_CRDS | {"clusterkopfpeerings.kopf.dev"}
    # The Application's path emptied, or the CRDs moved elsewhere: nothing of them is pruned.
    pruned = argocd_prunes(live, [])
    assert not crd_names(pruned)
    assert {o["kind"] for o in pruned} >= {"StatefulSet", "ServiceAccount", "ClusterRole"}


def test_deleting_the_argocd_application_with_its_resources_keeps_the_crds():
    applications = list(
        yaml.safe_load_all((MANIFESTS / "argocd" / "applications.yaml").read_text())
    )
    operator_app = next(a for a in applications if a["metadata"]["name"] == "modelfleet")
    # The resources-finalizer makes deleting the Application delete what it deployed.
    assert "resources-finalizer.argocd.argoproj.io" in operator_app["metadata"]["finalizers"]
    live = list(kustomize(operator_app["spec"]["source"]["path"].removeprefix("manifests/")))
    deleted = argocd_app_deletion_deletes(live)
    assert not crd_names(deleted)
    assert {o["kind"] for o in deleted} >= {"StatefulSet", "ServiceAccount", "ClusterRole"}
    chart = render().objects()
    assert not crd_names(argocd_app_deletion_deletes(chart))
