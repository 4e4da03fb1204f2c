"""What the gateway records: one JSON access-log line per request, Prometheus counts and
latency per variant, per key and per tenant; never an API key."""

from __future__ import annotations

import json
import re

import pytest

from .processes import http_get, wait_until
from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy

AUDIT_FIELDS = {
    "time",
    "request_id",
    "key_id",
    "tenant",
    "model",
    "task_type",
    "task_type_header",
    "route",
    "cluster",
    "status",
    "response_flags",
    "duration_ms",
}


def log_lines(gateway) -> list[dict]:
    if not gateway.access_log.exists():
        return []
    return [json.loads(line) for line in gateway.access_log.read_text().splitlines() if line]


def logged(gateway, request_id: str) -> dict:
    return wait_until(
        lambda: next((e for e in log_lines(gateway) if e["request_id"] == request_id), None),
        5,
        f"the access-log line of {request_id}",
    )


def part(entry: dict, expected: dict) -> dict:
    """`expected`, if `entry` agrees with it; else what `entry` has instead (for the diff)."""
    found = {key: entry.get(key) for key in expected}
    assert found == expected
    return found


def test_each_request_gets_an_audit_line_without_the_key(gateway, fleet):
    key = fleet.key("app")
    # The gateway makes its own request ids and tells the client.
    served, refused, unknown = (
        call(gateway.url, path, body, headers).headers["x-request-id"]
        for path, body, headers in [
            # Some clients put a key in the query string: the log leaves it out.
            (
                f"{CHAT}?api_key=sk-in-query",
                {"task_type": "code", "messages": MESSAGES},
                bearer(key.key),
            ),
            (CHAT, {"model": "mid", "messages": []}, bearer(key.key)),
            (
                CHAT,
                {"model": "mid", "messages": MESSAGES},
                {**bearer("sk-wrong-key"), "x-client-id": "app"},
            ),
        ]
    )

    entry = logged(gateway, served)
    assert entry.keys() >= AUDIT_FIELDS
    assert part(
        entry,
        {
            "key_id": "app",
            "tenant": "acme",
            "task_type": "code",
            "route": "code",
            "cluster": "small",
            "status": 200,
            "response_flags": "-",
            "path": CHAT,
        },
    )
    assert isinstance(entry["duration_ms"], int)

    assert part(
        logged(gateway, refused),
        {
            "key_id": "app",
            "status": 400,
            "model": "mid",
            "upstream_host": None,
        },
    )
    # A refused key is logged without an identity, even when the client claims one.
    assert part(logged(gateway, unknown), {"key_id": None, "tenant": None, "status": 401})

    text = gateway.access_log.read_text()
    for api_key in fleet.keys:
        assert api_key.key not in text
    assert "sk-wrong-key" not in text and "sk-in-query" not in text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample of `name` whose labels include `labels`; Envoy creates some
    counters on first use, so a missing one is 0."""
    values = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels.items() <= found.items():
                values.append(float(match.group(2)))
    assert len(values) <= 1, f"{len(values)} samples of {name} with {labels}"
    return values[0] if values else 0.0


def test_prometheus_counts_per_variant_key_and_tenant(gateway, fleet):
    envoy = gateway.envoy
    before = envoy.prometheus()
    other = bearer(fleet.key("other").key)
    for _ in range(3):
        assert call(gateway.url, CHAT, {"model": "mid", "messages": MESSAGES}, other).status == 200
    assert call(gateway.url, CHAT, {"task_type": "code", "messages": MESSAGES}, other).status == 200

    def grew(name: str, **labels: str) -> float:
        return metric(envoy.prometheus(), name, **labels) - metric(before, name, **labels)

    completed = "envoy_cluster_upstream_rq_completed"
    assert grew(completed, envoy_cluster_name="mid") == 3
    assert grew(completed, envoy_cluster_name="small") == 1
    per_key = "envoy_vhost_vcluster_upstream_rq_completed"
    assert grew(per_key, key_id="other", tenant="globex") == 4
    # Latency histograms arrive with the next stats flush (every second).
    latency = "envoy_vhost_vcluster_upstream_rq_time_count"
    wait_until(
        lambda: grew(latency, key_id="other", tenant="globex") == 4,
        5,
        "the per-key latency histogram",
    )

    exposed = envoy.prometheus() + envoy.admin_stats() + http_get(f"{envoy.admin_url}/config_dump")
    for api_key in fleet.keys:
        assert api_key.key not in exposed
