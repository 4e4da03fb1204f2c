"""The chart against a real run: the operator started with the args the chart's
StatefulSet gives it, on the local emulated cluster, with simulated vLLM replicas and a real
Prometheus; it runs the RoutingPolicy's gateway, whose pod the node agent starts as the
real gateway-sync sidecar and Envoy. The API calls the operator makes are what the chart's
ClusterRole must grant, exactly, and the sidecar's what the Role the operator gives it
grants; the metrics they export are what the dashboard and the alerts may name."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from modelfleet.api.crd import crd_documents
from modelfleet_testbed.local.faults import ApiCall
from modelfleet_testbed.local.fleet import GATEWAY_CONFIG_DIR
from modelfleet_testbed.local.processes import ManagedProcess, free_port
from modelfleet_testbed.local.schema_validation import with_defaults
from tests.deploy.argocd_health import health
from tests.deploy.chart import Render, container_args, pod_fields, render
from tests.deploy.monitoring import (
    alert_queries,
    as_prometheus_query,
    dashboard_queries,
    named_metrics,
)
from tests.deploy.rbac import (
    OPERATOR_AGENTS,
    granted,
    made_by,
    needed_by_admission,
    needed_by_calls,
)
from tests.e2e.operator_harness import BIN, Fleet, eventually

pytestmark = pytest.mark.e2e

NAMESPACE = "llm"
CONFIG_MAP = "e2e-gateway"
GATEWAY = "e2e-gw-gateway"  # the operator's name for the policy's gateway objects
GATEWAY_KINDS = (
    "deployment",
    "service",
    "serviceaccount",
    "role",
    "rolebinding",
    "poddisruptionbudget",
    "networkpolicy",
)
SIDECAR_AGENT = "modelfleet-gateway-sync"
APP_KEY, BURST_KEY = "sk-e2e-app-0123456789", "sk-e2e-burst-0123456789"
KEYS = {
    "keys": [
        {"id": "app", "key": APP_KEY, "tenant": "team-a"},
        {"id": "burst", "key": BURST_KEY, "tenant": "team-b"},
    ]
}
ALWAYS = {"name": "always", "start": "* * * * *", "end": "0 0 30 2 *"}
CHAT = {"task_type": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def chart_values() -> dict[str, Any]:
    """No gateway values: the operator runs the policy's gateway from its defaults."""
    return {"monitoring": {"prometheusRule": {"enabled": True}}}


def replace_flags(args: list[str], overrides: dict[str, str]) -> list[str]:
    """The args with `--name=value` flags replaced (or added) where the test must differ
    from a pod: loopback addresses, free ports, the local Prometheus, a temp directory."""
    kept = [a for a in args if a.partition("=")[0].removeprefix("--") not in overrides]
    return [*kept, *(f"--{name}={value}" for name, value in overrides.items())]


class ChartFleet(Fleet):
    """The local fleet, its operator started as the chart's StatefulSet starts replica 0."""

    def __init__(self, chart: Render, **kwargs: Any):
        super().__init__(**kwargs)
        self.chart = chart

    def start_operator(self, metrics_port: int | None = None) -> None:
        # The peering objects the chart creates; kopf's replicas announce themselves there.
        peerings = [*self.chart.find("ClusterKopfPeering"), *self.chart.find("KopfPeering")]
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(peerings))
        container = self.chart.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
        args = container_args(container, pod_fields("modelfleet-operator-0", 0))
        health_port = free_port()
        self.operator_metrics_port = metrics_port or free_port()
        argv = [
            str(BIN / "modelfleet"),
            *replace_flags(
                args,
                {
                    "kubeconfig": str(self.cluster.kubeconfig_path),
                    "prometheus-url": self.prometheus.url,
                    "health": f"127.0.0.1:{health_port}",
                    "metrics-host": "127.0.0.1",
                    "metrics-port": str(self.operator_metrics_port),
                    # The node agent runs each pod in its own directory (gateway_pods.py).
                    "gateway-config-dir": GATEWAY_CONFIG_DIR,
                    "gateway-listen-host": "127.0.0.1",
                },
            ),
        ]
        self.operator = ManagedProcess(argv, self.workdir / f"operator-{health_port}.log")
        self.operator.start()
        self.operator.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{health_port}/healthz"), 20, "/healthz"
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def sample_names(exposition: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in exposition.splitlines()
        if line.strip() and not line.startswith("#")
    }


def pool() -> dict[str, Any]:
    variant = {
        "gpusPerReplica": 1,
        "costPerReplicaHour": 2.0,
        "startupSeconds": 0,
        "queue": {"targetPerReplica": 8},
    }
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "e2e", "namespace": NAMESPACE},
        "spec": {
            "gpuBudget": 16,
            "metrics": {"refreshSeconds": 1, "staleAfterSeconds": 10},
            "variants": [
                {
                    **variant,
                    "name": "small",
                    "model": "org/tiny-7b",
                    "priority": 10,
                    "replicas": {"min": 1, "max": 4},
                },
                {
                    **variant,
                    "name": "big",
                    "model": "org/large-70b",
                    "priority": 100,
                    "replicas": {"min": 1, "max": 2},
                    "schedules": [{**ALWAYS, "replicas": 1}],
                },
            ],
        },
    }


def routing_policy(listener_port: int) -> list[dict[str, Any]]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "e2e-keys", "namespace": NAMESPACE},
        "data": {"keys.yaml": base64.b64encode(yaml.safe_dump(KEYS).encode()).decode()},
    }
    policy = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "e2e-gw", "namespace": NAMESPACE},
        "spec": {
            "pool": "e2e",
            "gateway": {
                "configMap": CONFIG_MAP,
                "listenerPort": listener_port,
                "apiKeySecret": "e2e-keys",
                "replicas": 1,
                "service": {"port": 8080},
                "rateLimit": {
                    "requestsPerMinute": 600,
                    "perKey": [{"keyId": "burst", "requestsPerMinute": 2}],
                },
            },
            "routes": [
                {
                    "name": "chat",
                    "match": {"taskType": ["chat"]},
                    "backends": [
                        {"variant": "small", "weight": 50},
                        {"variant": "big", "weight": 50},
                    ],
                }
            ],
            "degrade": [{"variant": "big", "waitingAbove": 50, "fallback": "small"}],
            # Never reached here: its gauges are what the budget alerts and panel read.
            "budgets": [
                {"tenant": "team-a", "period": "month", "amount": 1000, "action": "degrade"}
            ],
        },
    }
    return [secret, policy]


RESERVATION = {
    "apiVersion": "modelfleet.io/v1alpha1",
    "kind": "Reservation",
    "metadata": {"name": "team-a", "namespace": NAMESPACE},
    "spec": {
        "pool": "e2e",
        "variant": "small",
        "tenant": "team-a",
        "replicas": 2,
        "billing": {
            "mode": "hybrid",
            "reservedPricePerReplicaHour": 2.5,
            "onDemandPricePerRequest": 0.01,
            "includedRequestsPerReplicaHour": 1,
        },
    },
}


@dataclass
class Run:
    fleet: ChartFleet
    chart: Render
    applied: dict[str, dict[str, Any]]
    operator_calls: set[ApiCall] = field(default_factory=set)
    written: list[dict[str, Any]] = field(default_factory=list)
    sidecar_calls: set[ApiCall] = field(default_factory=set)
    sidecar_role: dict[str, Any] = field(default_factory=dict)
    scraped: dict[str, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)


def _apply(fleet: Fleet, *objects: dict[str, Any]) -> None:
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))


def _send(gateway: str) -> list[int]:
    url = f"{gateway}/v1/chat/completions"
    sent = [(APP_KEY, CHAT)] * 12 + [(BURST_KEY, CHAT)] * 4
    sent += [("sk-unknown-key", CHAT), (APP_KEY, {**CHAT, "messages": []})]
    sent += [(APP_KEY, {**CHAT, "task_type": "nothing-routes-this"})]
    return [_post(url, key, body) for key, body in sent]


def _post(url: str, key: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


@pytest.fixture(scope="module")
def run():
    chart = render(chart_values())
    fleet = ChartFleet(chart, speedup=5.0)
    try:
        fleet.start()
        yield _scenario(fleet, chart, free_port())
    finally:
        fleet.stop()


def _scenario(fleet: ChartFleet, chart: Render, listener: int) -> Run:
    applied = {"pool": pool(), "reservation": RESERVATION}
    # One conflict on the first Deployment write: the operator re-reads it, then re-applies.
    fleet.cluster.emulator.faults.add("patch", "deployments", 409, count=1)
    _apply(fleet, pool(), *routing_policy(listener))
    eventually(lambda: fleet.replicas("e2e-small") == 1, 20, "the pool's Deployments")
    # The reservation raises small's floor: a Scaled event, a grant, tenant costs.
    _apply(fleet, RESERVATION)
    eventually(lambda: fleet.replicas("e2e-small") == 2, 20, "the reserved floor")
    # The operator runs the policy's gateway; its Service reaches the pod's Envoy.
    gateway = fleet.gateway_url("e2e-gw")
    eventually(
        lambda: fleet.condition("routingpolicy", "e2e-gw", "Ready").get("status") == "True",
        30,
        "the gateway config published and served",
    )
    eventually(lambda: fleet.ready("e2e-small") == 2 and fleet.ready("e2e-big") == 1, 20, "ready")
    eventually(
        lambda: (
            fleet.condition("modelpool", "e2e", "Ready").get("status") == "True"
            and fleet.condition("modelpool", "e2e", "MetricsAvailable").get("status") == "True"
        ),
        30,
        "the pool Ready with fresh metrics",
    )
    assert fleet.events("Scaled"), "no Scaled event"
    result = Run(fleet, chart, applied)
    result.statuses = _send(gateway)
    result.scraped["operator"] = eventually(
        lambda: 'tenant="team-a"' in (text := fleet.operator_metrics()) and text,
        20,
        "tenant costs in the operator's /metrics",
    )
    result.live = {
        kind: fleet.get(kind, name)
        for kind, name in (("modelpool", "e2e"), ("reservation", "team-a"))
    }
    result.live["routingpolicy"] = fleet.get("routingpolicy", "e2e-gw")
    result.written = [
        _with_managed_fields(fleet, kind, name)
        for kind, name in (
            ("deployment", "e2e-small"),
            ("deployment", "e2e-big"),
            ("service", "e2e-small"),
            ("service", "e2e-big"),
            ("configmap", CONFIG_MAP),
            ("secret", f"{CONFIG_MAP}-routes"),
            *((kind, GATEWAY) for kind in GATEWAY_KINDS),
        )
    ]
    result.sidecar_role = fleet.get("role", GATEWAY)
    (pod,) = fleet.gateway_pods("e2e-gw")
    result.scraped["envoy"] = _text(f"http://127.0.0.1:{pod.stats_port}/stats/prometheus")
    replica = fleet.replica_urls("e2e-small")[0]
    result.scraped["vllm"] = _text(replica + "/metrics")
    # rate() needs two samples of the counters in its window.
    eventually(
        lambda: _query(
            fleet,
            'count_over_time(envoy_cluster_upstream_rq_completed{envoy_cluster_name="big"}[1m]) > 1',
        ),
        20,
        "two scrapes of the gateway by Prometheus",
    )
    # Every call so far, told apart by the client's User-Agent.
    calls = fleet.cluster.emulator.calls.calls()
    result.operator_calls = made_by(calls, OPERATOR_AGENTS)
    result.sidecar_calls = made_by(calls, (SIDECAR_AGENT,))
    return result


def _with_managed_fields(fleet: Fleet, kind: str, name: str) -> dict[str, Any]:
    shown = fleet.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", "--show-managed-fields")
    return json.loads(shown.stdout)


def _query(fleet: Fleet, promql: str) -> list[dict[str, Any]]:
    url = f"{fleet.prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"Prometheus refused {promql!r}: {err.read().decode()}") from None
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_the_traffic_met_every_gate(run):
    assert run.statuses == [200] * 14 + [429, 429, 401, 400, 404]


def test_operator_rbac_grants_exactly_what_the_operator_calls(run):
    rules = run.chart.one("ClusterRole")["rules"]
    needed = needed_by_calls(run.operator_calls) | needed_by_admission(run.written)
    have = granted(rules)
    assert needed - have == set(), "calls the ClusterRole does not allow"
    assert have - needed == set(), "permissions no call needed"
    namespaces = {call.namespace for call in run.operator_calls}
    assert namespaces == {"", NAMESPACE}, "a cluster-wide operator: cluster-wide watches"


def test_gateway_rbac_grants_exactly_what_the_sidecar_calls(run):
    """The Role the operator gives each gateway's ServiceAccount, against the calls of the
    sidecar in the gateway pod."""
    assert run.sidecar_calls, "no call of the gateway's sidecar was seen"
    assert granted(run.sidecar_role["rules"]) == needed_by_calls(run.sidecar_calls)
    assert {call.namespace for call in run.sidecar_calls} == {NAMESPACE}


def test_the_operator_writes_no_spec_of_the_resources_users_own(run):
    writes = {
        (call.resource, call.subresource, call.user_agent.split("/")[0])
        for call in run.operator_calls
        if call.group == "modelfleet.io" and call.verb not in ("get", "list", "watch")
    }
    # Status subresources, and kopf's finalizer on the pools its daemons serve.
    assert writes == {
        ("modelpools", "status", "modelfleet-operator"),
        ("reservations", "status", "modelfleet-operator"),
        ("routingpolicies", "status", "modelfleet-operator"),
        ("modelpools", "", "kopf"),
    }
    for kind in ("pool", "reservation"):
        live = run.live["modelpool" if kind == "pool" else kind]
        # The API server fills in the CRD's defaults; nothing else may change the spec.
        applied = with_defaults(spec_schema(live["kind"]), run.applied[kind]["spec"])
        assert live["spec"] == applied, f"the {kind}'s spec drifted"
        assert live["metadata"].get("annotations", {}).keys() <= {
            "kubectl.kubernetes.io/last-applied-configuration"
        }


def spec_schema(kind: str) -> dict[str, Any]:
    (crd,) = [doc for doc in crd_documents() if doc["spec"]["names"]["kind"] == kind]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_every_metric_the_dashboard_and_alerts_name_is_exported(run):
    exported = set().union(*(sample_names(text) for text in run.scraped.values()))
    missing = {
        name: sorted(where)
        for name, where in named_metrics(run.chart).items()
        if name not in exported
    }
    assert missing == {}


def test_every_dashboard_and_alert_query_runs_on_prometheus(run):
    for where, expr in [*dashboard_queries(), *alert_queries(run.chart)]:
        try:
            _query(run.fleet, as_prometheus_query(expr))
        except AssertionError as err:
            raise AssertionError(f"{where}: {err}") from None
    calls = _query(run.fleet, as_prometheus_query(dict(dashboard_queries())[_panel("Calls")]))
    assert {s["metric"]["envoy_cluster_name"] for s in calls} == {"small", "big"}
    waiting = _query(run.fleet, as_prometheus_query(dict(dashboard_queries())[_panel("Waiting")]))
    assert {s["metric"]["variant"] for s in waiting} == {"small", "big"}


def _panel(title_start: str) -> str:
    return next(where for where, _ in dashboard_queries() if f"'{title_start}" in where)


def test_argocd_shows_the_live_fleet_healthy(run):
    for kind, obj in run.live.items():
        shown, message = health(obj)
        assert shown == "Healthy", f"{kind}: {shown}: {message}"


def test_the_gateway_pod_s_sidecar_syncs_the_files_its_envoy_serves(run):
    (pod,) = run.fleet.gateway_pods("e2e-gw")
    config = pod.directory / GATEWAY_CONFIG_DIR
    files = sorted(p.name for p in config.iterdir() if not p.name.startswith("."))
    assert files == ["cds.yaml", "envoy.yaml", "lds.yaml", "rds.yaml"]
    assert (config / "rds.yaml").stat().st_mode & 0o077 == 0
    assert "gateway.files_published" in pod.log_tail("gateway-sync", 500)
