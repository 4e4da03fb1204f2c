"""The operator's own /metrics."""

from datetime import UTC, datetime

from prometheus_client import generate_latest

from modelfleet.api.load import load_resources
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.plan.scaling.planner import plan_pool

NOW = datetime(2026, 11, 27, 2, tzinfo=UTC)


def test_a_pool_the_operator_stops_acting_for_leaves_no_gauges():
    chat = load_resources(["manifests/samples"]).pools[0]
    metrics = OperatorMetrics()
    metrics.record_plan(plan_pool(chat, [], {}, NOW), NOW)
    exported = generate_latest(metrics.registry)
    assert b'modelfleet_variant_desired_replicas{namespace="llm",pool="chat"' in exported
    metrics.forget_pool("llm", "chat")
    assert b'pool="chat"' not in generate_latest(metrics.registry)


def test_a_changed_reason_replaces_the_old_series():
    chat = load_resources(["manifests/samples"]).pools[0]
    metrics = OperatorMetrics()
    metrics.record_plan(plan_pool(chat, [], {}, NOW), NOW)  # 10:00 Shanghai: schedule
    night = datetime(2026, 11, 27, 18, tzinfo=UTC)  # 02:00 Shanghai: min
    metrics.record_plan(plan_pool(chat, [], {}, night), night)
    lines = [
        line
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith("modelfleet_variant_desired_replicas{") and "qwen3-235b" in line
    ]
    assert len(lines) == 1 and 'reason="min"' in lines[0]
