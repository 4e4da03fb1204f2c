"""The alerts and the dashboard: valid for Prometheus' own tools (promtool from Debian's
prometheus package), firing on exactly the conditions they describe, and the scrape
relabelling giving the labels the operator's queries select on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.observe.prometheus import PoolQueries
from tests.deploy.chart import ALL_FEATURES, Render, load_values, render
from tests.deploy.monitoring import dashboard, dashboard_queries, metric_names, rule_groups

WITH_RULES = {"monitoring": {"prometheusRule": {"enabled": True}}}
# What the issue asks the dashboard to show.
PANELS = {
    "Calls per model",
    "Call share per model",
    "Cost share per model",
    "Cost per tenant",
    "GPUs planned vs budget",
    "Replicas by reason",
    "p99 latency per route",
    "Rejected requests by reason",
    "Tokens per tenant",
    "Budget spend per tenant",
}
ALERTS = {
    "ModelfleetApiKeyCallsHigh",
    "ModelfleetApiKeyTokensHigh",
    "ModelfleetBudgetSoftLimit",
    "ModelfleetBudgetExceeded",
    "ModelfleetGateway5xxRatioHigh",
    "ModelfleetQueueOverDegradeThreshold",
    "ModelfleetMetricsStale",
    "ModelfleetPoolOvercommitted",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (it ships promtool)")
    return found


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def write_rules(result: Render, directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(result)}, sort_keys=False))
    return path


@pytest.mark.parametrize("values", [WITH_RULES, "all-features"])
def test_promtool_accepts_the_rules(promtool, tmp_path, values):
    result = render(load_values(ALL_FEATURES) if values == "all-features" else values)
    rules = write_rules(result, tmp_path)
    checked = run_promtool(promtool, "check", "rules", rules.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {r["alert"] for g in rule_groups(result) for r in g["rules"]}
    assert names == ALERTS


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


GATEWAY_POD = {"namespace": "llm", "gateway": "chat", "pod": "gw-1"}
VARIANT = {"namespace": "llm", "pool": "chat", "variant": "qwen3-235b"}
# The gateway's envoy_modelfleet_* counters: policy and pool are constant tags.
KEY = {"namespace": "llm", "policy": "chat", "pool": "chat", "pod": "gw-1"}
# The operator's budget gauges (a tenant's budget has no key_id).
BUDGET = {"namespace": "llm", "policy": "chat", "period": "day", "currency": "USD", "pod": "op-1"}


def alert(labels: dict[str, str | None], summary: str, description: str) -> dict[str, Any]:
    """An expected alert; a label set to None is one the alert drops."""
    return {
        "exp_labels": {k: v for k, v in labels.items() if v is not None},
        "exp_annotations": {"summary": summary, "description": description},
    }


# Each case: input series (one sample a minute), then (minute, alert, expected alerts).
RULE_TESTS: list[dict[str, Any]] = [
    {
        "input_series": [
            # 10 served and 10 refused (429) calls a minute: 1200 an hour, over the default
            # 1000, refused ones counted; 10 served a minute is not.
            series(
                "envoy_modelfleet_calls",
                {**KEY, "tenant": "fin-risk", "key_id": "batch", "response_code": "200"},
                "0+10x90",
            ),
            series(
                "envoy_modelfleet_calls",
                {**KEY, "tenant": "fin-risk", "key_id": "batch", "response_code": "429"},
                "0+10x90",
            ),
            series(
                "envoy_modelfleet_calls",
                {**KEY, "tenant": "web", "key_id": "app", "response_code": "200"},
                "0+10x90",
            ),
            # Someone guessing keys: 401s carry no key id and no tenant.
            series("envoy_modelfleet_calls", {**KEY, "response_code": "401"}, "0+25x90"),
        ],
        "alerts": [
            (30, "ModelfleetApiKeyCallsHigh", []),
            (
                65,
                "ModelfleetApiKeyCallsHigh",
                [
                    alert(
                        {
                            "severity": "warning",
                            "namespace": "llm",
                            "policy": "chat",
                            "tenant": "fin-risk",
                            "key_id": "batch",
                        },
                        "API key batch of tenant fin-risk made 1.2k calls in the last hour",
                        "More than 1000 calls in one hour through RoutingPolicy llm/chat, "
                        "refused ones (401, 429) included: a leaked key, a runaway client or "
                        "someone guessing keys. Rotate the key in the policy's apiKeySecret or "
                        "lower its rateLimit.perKey.",
                    ),
                    alert(
                        {
                            "severity": "warning",
                            "namespace": "llm",
                            "policy": "chat",
                            "key_id": "(unknown)",
                        },
                        "API key (unknown) of tenant  made 1.5k calls in the last hour",
                        "More than 1000 calls in one hour through RoutingPolicy llm/chat, "
                        "refused ones (401, 429) included: a leaked key, a runaway client or "
                        "someone guessing keys. Rotate the key in the policy's apiKeySecret or "
                        "lower its rateLimit.perKey.",
                    ),
                ],
            ),
        ],
    },
    {
        "input_series": [
            # 20k prompt + 20k completion tokens a minute: 2.4M an hour, over the default 2M;
            # 10k + 10k a minute is not.
            *(
                series(
                    f"envoy_modelfleet_{kind}_tokens",
                    {**KEY, "tenant": tenant, "key_id": key, "route": "chat", "variant": "v"},
                    f"0+{per_minute}x90",
                )
                for kind in ("prompt", "completion")
                for tenant, key, per_minute in (("web", "app", 20000), ("acme", "bot", 10000))
            )
        ],
        "alerts": [
            (30, "ModelfleetApiKeyTokensHigh", []),
            (
                65,
                "ModelfleetApiKeyTokensHigh",
                [
                    alert(
                        {
                            "severity": "warning",
                            "namespace": "llm",
                            "policy": "chat",
                            "tenant": "web",
                            "key_id": "app",
                        },
                        "API key app of tenant web used 2.4M tokens in the last hour",
                        "More than 2000000 prompt and completion tokens in one hour through "
                        "RoutingPolicy llm/chat: long prompts or answers in a loop cost money "
                        "even at a modest call rate. Check the key's audit log lines, give its "
                        "tenant a budget (spec.budgets) or rotate the key.",
                    )
                ],
            ),
        ],
    },
    {
        "input_series": [
            # acme: past its soft limit (80 of 100), not blocked; globex: blocked; initech:
            # under its soft limit.
            series("modelfleet_budget_spend", {**BUDGET, "tenant": "acme"}, "50x3 90x20"),
            series("modelfleet_budget_soft_limit", {**BUDGET, "tenant": "acme"}, "80x23"),
            series("modelfleet_budget_spend", {**BUDGET, "tenant": "globex"}, "120x23"),
            series("modelfleet_budget_soft_limit", {**BUDGET, "tenant": "globex"}, "80x23"),
            series("modelfleet_budget_spend", {**BUDGET, "tenant": "initech"}, "10x23"),
            series("modelfleet_budget_soft_limit", {**BUDGET, "tenant": "initech"}, "80x23"),
            *(
                series(
                    "modelfleet_budget_enforced",
                    {**BUDGET, "tenant": tenant, "action": action},
                    "1x23" if (tenant, action) == ("globex", "block") else "0x23",
                )
                for tenant in ("acme", "globex", "initech")
                for action in ("block", "degrade")
            ),
        ],
        "alerts": [
            (2, "ModelfleetBudgetSoftLimit", []),
            (
                5,
                "ModelfleetBudgetSoftLimit",
                [
                    alert(
                        {"severity": "warning", **BUDGET, "tenant": "acme", "pod": None},
                        "Tenant acme spent 90 USD this day, past its budget's soft limit",
                        "RoutingPolicy llm/chat: once the budget's amount is spent the gateway "
                        "blocks (429 insufficient_quota) or degrades the tenant's requests until "
                        "the period resets. kubectl get routingpolicy -o yaml shows "
                        "status.budgets.",
                    )
                ],
            ),
            (
                5,
                "ModelfleetBudgetExceeded",
                [
                    alert(
                        {
                            "severity": "warning",
                            **BUDGET,
                            "tenant": "globex",
                            "action": "block",
                            "pod": None,
                        },
                        "Tenant globex spent its day budget: the gateway applies block",
                        "RoutingPolicy llm/chat: block answers 429 insufficient_quota, degrade "
                        "sends the requests to each route's cheaper backends, until the period "
                        "resets (status.budgets[].resetsAt). Raise spec.budgets[].amount to "
                        "lift it now.",
                    )
                ],
            ),
        ],
    },
    {
        "input_series": [
            # 10 of every 100 answers are 5xx: 10% for longer than 10 minutes.
            series(
                "envoy_http_downstream_rq_completed",
                {**GATEWAY_POD, "envoy_http_conn_manager_prefix": "gateway"},
                "0+100x40",
            ),
            series(
                "envoy_http_downstream_rq_xx",
                {
                    **GATEWAY_POD,
                    "envoy_http_conn_manager_prefix": "gateway",
                    "envoy_response_code_class": "5",
                },
                "0+10x40",
            ),
            # Envoy's admin listener is not the gateway: its errors do not count.
            series(
                "envoy_http_downstream_rq_xx",
                {
                    **GATEWAY_POD,
                    "envoy_http_conn_manager_prefix": "admin",
                    "envoy_response_code_class": "5",
                },
                "0+1000x40",
            ),
        ],
        "alerts": [
            (8, "ModelfleetGateway5xxRatioHigh", []),
            (
                20,
                "ModelfleetGateway5xxRatioHigh",
                [
                    alert(
                        {"severity": "critical", "namespace": "llm", "gateway": "chat"},
                        "Gateway llm/chat answers 10% of requests with 5xx",
                        "Clients get upstream_unavailable or backend errors. Check the variants' "
                        "ready replicas (kubectl get modelpools) and the gateway's access log.",
                    )
                ],
            ),
        ],
    },
    {
        "input_series": [
            # Two replicas, 80 + 70 waiting, against the policy's waitingAbove of 100.
            series("vllm:num_requests_waiting", {**VARIANT, "pod": "a"}, "80x20"),
            series("vllm:num_requests_waiting", {**VARIANT, "pod": "b"}, "70x20"),
            series(
                "modelfleet_degrade_threshold_waiting",
                {**VARIANT, "policy": "chat", "fallback": "qwen25-72b", "priority": "low"},
                "100x20",
            ),
            # Another variant under its threshold.
            series(
                "vllm:num_requests_waiting", {**VARIANT, "variant": "qwen25-7b", "pod": "c"}, "5x20"
            ),
            series(
                "modelfleet_degrade_threshold_waiting",
                {**VARIANT, "variant": "qwen25-7b", "policy": "chat", "fallback": "x"},
                "10x20",
            ),
        ],
        "alerts": [
            (3, "ModelfleetQueueOverDegradeThreshold", []),
            (
                6,
                "ModelfleetQueueOverDegradeThreshold",
                [
                    alert(
                        {"severity": "warning", **VARIANT},
                        "llm/chat variant qwen3-235b has 150 requests waiting, over its degrade "
                        "threshold",
                        "The backlog stayed above the RoutingPolicy's degrade.waitingAbove for "
                        "5m: low-priority traffic is on the fallback. Raise replicas.max or the "
                        "GPU budget if it persists.",
                    )
                ],
            ),
        ],
    },
    {
        "input_series": [
            # qwen3-235b: the operator's newest sample is 400 s old (over 300).
            series("modelfleet_variant_metrics_age_seconds", {**VARIANT, "pod": "op-1"}, "400x20"),
            series("vllm:num_requests_waiting", {**VARIANT, "pod": "a"}, "0x20"),
            # qwen25-7b: ready replicas, but Prometheus has no queue series for them.
            series(
                "modelfleet_variant_ready_replicas",
                {**VARIANT, "variant": "qwen25-7b", "pod": "op-1"},
                "2x20",
            ),
            # qwen25-72b: fresh and scraped.
            series(
                "modelfleet_variant_metrics_age_seconds",
                {**VARIANT, "variant": "qwen25-72b", "pod": "op-1"},
                "3x20",
            ),
            series(
                "modelfleet_variant_ready_replicas",
                {**VARIANT, "variant": "qwen25-72b", "pod": "op-1"},
                "2x20",
            ),
            series("vllm:num_requests_waiting", {**VARIANT, "variant": "qwen25-72b"}, "0x20"),
        ],
        "alerts": [
            (
                6,
                "ModelfleetMetricsStale",
                [
                    alert(
                        {"severity": "warning", **VARIANT, "variant": variant},
                        f"llm/chat variant {variant} scales blind: its queue metrics are stale "
                        "or missing",
                        "The operator holds the replica count while it cannot see the queue. "
                        "Check that Prometheus scrapes the vLLM pods with pool and variant "
                        "labels (monitoring.podMonitors.modelServers) and the pool's "
                        "MetricsAvailable condition.",
                    )
                    for variant in ("qwen3-235b", "qwen25-7b")
                ],
            ),
        ],
    },
    {
        "input_series": [
            series(
                "modelfleet_pool_overcommitted",
                {"namespace": "llm", "pool": "chat", "pod": "op-1"},
                "0x3 1x20",
            ),
            series(
                "modelfleet_pool_overcommitted",
                {"namespace": "llm", "pool": "other", "pod": "op-1"},
                "0x20",
            ),
        ],
        "alerts": [
            (6, "ModelfleetPoolOvercommitted", []),
            (
                10,
                "ModelfleetPoolOvercommitted",
                [
                    alert(
                        {"severity": "critical", "namespace": "llm", "pool": "chat"},
                        "Pool llm/chat is Overcommitted: its reservations need more GPUs than "
                        "its budget",
                        "Reservations are granted only up to spec.gpuBudget. Raise the budget or "
                        "shrink the reservations (kubectl get reservations).",
                    )
                ],
            ),
        ],
    },
]


def test_each_alert_fires_on_its_condition_and_only_then(promtool, tmp_path):
    write_rules(render(WITH_RULES), tmp_path)
    tests = [
        {
            "interval": "1m",
            "input_series": case["input_series"],
            "alert_rule_test": [
                {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected}
                for minute, name, expected in case["alerts"]
            ],
        }
        for case in RULE_TESTS
    ]
    assert {name for case in RULE_TESTS for _, name, _ in case["alerts"]} == ALERTS
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    tested = run_promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_metric_names_are_read_from_promql_without_functions_or_labels():
    expr = (
        "histogram_quantile(0.99, sum by (le, envoy_route) (rate(envoy_vhost_route_upstream_"
        'rq_time_bucket{namespace=~"$namespace", x="a{b}"}[$__rate_interval]))) '
        "> on (namespace) group_left (pool) max without (pod) (modelfleet_pool_gpu_budget offset "
        "5m) or vector(1) unless vllm:num_requests_waiting > bool 1e3"
    )
    assert metric_names(expr) == {
        "envoy_vhost_route_upstream_rq_time_bucket",
        "modelfleet_pool_gpu_budget",
        "vllm:num_requests_waiting",
    }


def test_the_dashboard_is_grafana_json_with_the_panels_asked_for():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = board["panels"]
    assert {p["title"] for p in panels} >= PANELS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    assert not _overlaps([p["gridPos"] for p in panels])
    for _, expr in dashboard_queries(board):
        assert "$" not in expr.replace("$__", "").replace("$namespace", "").replace("$pool", "")


def _overlaps(boxes: list[dict[str, int]]) -> bool:
    cells = set()
    for box in boxes:
        assert box["x"] + box["w"] <= 24, box
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                if (x, y) in cells:
                    return True
                cells.add((x, y))
    return False


def test_the_dashboard_configmap_carries_the_dashboard():
    result = render()
    config = result.one("ConfigMap")
    assert json.loads(config["data"]["modelfleet.json"]) == dashboard()
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_pod_monitor_relabelling_gives_the_labels_the_operator_selects_on(promtool, tmp_path):
    """The PodMonitor's relabelings, run by Prometheus' own relabelling on the labels its
    Kubernetes discovery gives a vLLM pod of the operator's."""
    monitor = render(load_values(ALL_FEATURES)).one("PodMonitor", "modelfleet-model-servers")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    discovered = {
        "__meta_kubernetes_namespace": "llm",
        "__meta_kubernetes_pod_label_modelfleet_io_pool": "chat",
        "__meta_kubernetes_pod_label_modelfleet_io_variant": "qwen25-7b",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "vllm",
    }
    (tmp_path / "targets.json").write_text(
        json.dumps([{"targets": ["10.0.0.5:8000"], "labels": discovered}])
    )
    config = {
        "scrape_configs": [
            {
                "job_name": "model-servers",
                "file_sd_configs": [{"files": ["targets.json"]}],
                "relabel_configs": [_snake_case(r) for r in endpoint["relabelings"]],
            }
        ]
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = run_promtool(
        promtool,
        "check",
        "service-discovery",
        "--timeout=2s",
        "prometheus.yml",
        "model-servers",
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    (target,) = json.loads(checked.stdout)
    labels = target["labels"]
    assert {k: labels.get(k) for k in ("namespace", "pool", "variant")} == {
        "namespace": "llm",
        "pool": "chat",
        "variant": "qwen25-7b",
    }
    # The operator's own query selector finds exactly these labels.
    assert PoolQueries("llm", "chat").selector == '{namespace="llm",pool="chat"}'


def _snake_case(relabeling: dict[str, Any]) -> dict[str, Any]:
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(k, k): v for k, v in relabeling.items()}
