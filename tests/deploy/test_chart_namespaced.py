"""A namespaced install (`operator.watchNamespaces`): the chart gives the operator Roles
and no cluster-wide permission, and the operator started with the chart's args on the
local cluster makes no call those Roles do not grant, and none outside its namespace."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet_testbed.local.processes import free_port
from tests.deploy.chart import Render, render
from tests.deploy.rbac import (
    OPERATOR_AGENTS,
    granted,
    made_by,
    needed_by_admission,
    needed_by_calls,
)
from tests.deploy.test_chart_e2e import (
    CONFIG_MAP,
    NAMESPACE,
    ChartFleet,
    _apply,
    _with_managed_fields,
    pool,
    routing_policy,
)
from tests.e2e.operator_harness import eventually

CLUSTER_ONLY = {
    ("kopf.dev", "clusterkopfpeerings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


def namespaced_chart(*namespaces: str) -> Render:
    return render({"operator": {"watchNamespaces": list(namespaces)}})


def test_each_watched_namespace_gets_the_cluster_role_s_rules_as_a_role():
    cluster_rules = render(None).one("ClusterRole")["rules"]
    chart = namespaced_chart("llm", "team-a")
    assert not chart.find("ClusterRole") and not chart.find("ClusterRoleBinding")
    assert not chart.find("ClusterKopfPeering")
    expected = {
        (group, "kopfpeerings" if resource == "clusterkopfpeerings" else resource, verb)
        for group, resource, verb in granted(cluster_rules)
        if (group, resource) != ("apiextensions.k8s.io", "customresourcedefinitions")
    }
    operator_roles = [r for r in chart.find("Role") if r["metadata"]["name"].endswith("operator")]
    assert {r["metadata"]["namespace"] for r in operator_roles} == {"llm", "team-a"}
    for role in operator_roles:
        have = granted(role["rules"])
        # The same permissions as cluster-wide, in this namespace only, and kopf's peering
        # of the namespace instead of the cluster's.
        assert have == expected
        assert not {(g, r) for g, r, _ in have} & CLUSTER_ONLY
    bindings = {b["metadata"]["namespace"]: b for b in chart.find("RoleBinding")
                if b["metadata"]["name"].endswith("operator")}  # fmt: skip
    assert set(bindings) == {"llm", "team-a"}
    assert all(b["roleRef"]["kind"] == "Role" for b in bindings.values())
    peerings = chart.find("KopfPeering")
    assert {p["metadata"]["namespace"] for p in peerings} == {"llm", "team-a"}
    args = chart.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=llm" in args and "--namespace=team-a" in args
    assert "--all-namespaces" not in args


@pytest.mark.e2e
def test_the_namespaced_operator_calls_only_what_its_role_grants_in_its_namespace():
    chart = namespaced_chart(NAMESPACE)
    fleet = ChartFleet(chart, speedup=5.0)
    try:
        fleet.start()
        _apply(fleet, pool(), *routing_policy(free_port()))
        eventually(
            lambda: fleet.replicas("e2e-small") == 1 and fleet.replicas("e2e-big") == 1,
            30,
            "the pool's Deployments",
        )
        eventually(
            lambda: fleet.condition("modelpool", "e2e", "Ready").get("status") == "True",
            30,
            "the pool Ready",
        )
        eventually(lambda: fleet.get("configmap", CONFIG_MAP), 30, "the gateway's files")
        written: list[dict[str, Any]] = [
            _with_managed_fields(fleet, kind, name)
            for kind, name in (
                ("deployment", "e2e-small"),
                ("service", "e2e-small"),
                ("configmap", CONFIG_MAP),
            )
        ]
        calls = made_by(fleet.cluster.emulator.calls.calls(), OPERATOR_AGENTS)
    finally:
        fleet.stop()
    assert calls
    assert {call.namespace for call in calls} == {NAMESPACE}, sorted(
        (c.verb, c.resource) for c in calls if c.namespace != NAMESPACE
    )
    (role,) = [
        r
        for r in chart.find("Role")
        if r["metadata"]["namespace"] == NAMESPACE and r["metadata"]["name"].endswith("operator")
    ]
    needed = needed_by_calls(calls) | needed_by_admission(written)
    assert needed - granted(role["rules"]) == set(), "calls the Role does not allow"
