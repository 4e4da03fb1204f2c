"""What the gateway records: one JSON access-log line per request, Prometheus counts and
latency per variant, per key and per tenant; never an API key."""

from __future__ import annotations

import pytest

from .processes import http_get, wait_until
from .records import logged, metric, part, total
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
    "rule",
    "assigned_task_type",
    "route",
    "cluster",
    "variant",
    "attempts",
    "status",
    "response_flags",
    "prompt_tokens",
    "completion_tokens",
    "duration_ms",
}


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
            "variant": "small",
            "attempts": 1,
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


def test_prometheus_counts_per_variant_key_and_tenant(gateway, fleet):
    envoy = gateway.envoy
    before = envoy.prometheus()
    other = bearer(fleet.key("other").key)
    for _ in range(3):
        assert call(gateway.url, CHAT, {"model": "mid", "messages": MESSAGES}, other).status == 200
    assert call(gateway.url, CHAT, {"task_type": "code", "messages": MESSAGES}, other).status == 200

    def grew(name: str, **labels: str) -> float:
        return metric(envoy.prometheus(), name, **labels) - metric(before, name, **labels)

    def grew_in_all(name: str, **labels: str) -> float:
        return total(envoy.prometheus(), name, **labels) - total(before, name, **labels)

    # A variant's requests are counted on its cluster, and (first choices of routes that
    # fall back to another variant) on `<variant>.fallback-<other>`: sum by variant.
    completed = "envoy_cluster_upstream_rq_completed"
    assert grew_in_all(completed, envoy_cluster_name="mid") == 3
    assert grew_in_all(completed, envoy_cluster_name="small") == 1
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
