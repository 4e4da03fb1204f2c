"""What the demo puts into the cluster besides the samples: the demo's API keys, two more
Reservations (so each billing mode has a tenant), and the local settings a user would
patch in for this environment."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from modelfleet_testbed.demo.day import ABUSIVE_KEY

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
NAMESPACE = "llm"
POOL = "chat"
POLICY = "chat"
# One key per tenant; the demo prints the first for people to try with curl.
KEYS = [
    {"id": "fin-risk-app", "key": "sk-demo-fin-risk-5b1d", "tenant": "fin-risk"},
    {"id": "support-app", "key": "sk-demo-support-8c2e", "tenant": "support"},
    {"id": "research-app", "key": "sk-demo-research-3f9a", "tenant": "research"},
    {"id": ABUSIVE_KEY, "key": "sk-demo-scraper-77aa", "tenant": "scraper"},
]
ABUSIVE_REQUESTS_PER_MINUTE = 30
# The demo's budget (it replaces the sample's): research's day budget runs out during the
# day, so its chat and summary requests go to the cheaper qwen25-7b only, until midnight.
BUDGETS = [
    {
        "tenant": "research",
        "period": "day",
        "amount": 0.03,
        "softLimitPercent": 50,
        "action": "degrade",
    }
]


def api_key_secret(secret_name: str) -> dict[str, Any]:
    keys = yaml.safe_dump({"keys": KEYS}).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name, "namespace": NAMESPACE},
        "data": {"keys.yaml": base64.b64encode(keys).decode()},
    }


def extra_reservations() -> list[dict[str, Any]]:
    def reservation(name, variant, tenant, replicas, billing):
        return {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "Reservation",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "pool": POOL,
                "variant": variant,
                "tenant": tenant,
                "replicas": replicas,
                "billing": billing,
            },
        }

    return [
        reservation(
            "support-7b",
            "qwen25-7b",
            "support",
            2,
            {"mode": "reserved", "reservedPricePerReplicaHour": 2.4},
        ),
        reservation(
            "research-70b",
            "qwen25-72b",
            "research",
            1,
            {"mode": "onDemand", "onDemandPricePerRequest": 0.004},
        ),
    ]


def pool_patch(pool: dict[str, Any], prometheus_url: str, speed: float) -> str:
    """Local settings: this Prometheus, a 1 s refresh, a staleness limit that allows for
    the compressed clock, and small vLLM batches so the simulated GPUs form queues. The
    235B scales on its schedule and queue only: the day shows the degrade rule taking the
    burst's backlog, which the latency SLO signal would otherwise answer with replicas up
    to the variant's max (`modelfleet simulate --compare` shows that signal at work)."""
    variants = []
    for variant in pool["spec"]["variants"]:
        big = variant["name"] == "qwen3-235b"
        patched = {
            **variant,
            "args": [*variant.get("args", []), "--max-num-seqs", "1" if big else "16"],
        }
        if big:
            patched["slo"] = {"enabled": False}
        variants.append(patched)
    metrics = {
        "prometheusUrl": prometheus_url,
        "refreshSeconds": 1,
        "staleAfterSeconds": int(5 * speed),
    }
    return json.dumps({"spec": {"metrics": metrics, "variants": variants}})


def wall_clock_pool_patch(sample_metrics: dict[str, Any]) -> str:
    """Back to the sample's staleness limit once the clock is real (None: the default)."""
    stale = sample_metrics.get("staleAfterSeconds")
    return json.dumps({"spec": {"metrics": {"staleAfterSeconds": stale}}})


def policy_patch(listener_port: int) -> str:
    rate_limit = {
        "requestsPerMinute": 6000,
        "perKey": [{"keyId": ABUSIVE_KEY, "requestsPerMinute": ABUSIVE_REQUESTS_PER_MINUTE}],
    }
    gateway = {
        "listenerPort": listener_port,
        "rateLimit": rate_limit,
        # One gateway replica on this machine: it enforces the whole limit.
        "replicas": 1,
        # The Service on its own loopback address: a port anyone may bind (80 needs root).
        "service": {"port": 8080},
    }
    return json.dumps({"spec": {"gateway": gateway, "budgets": BUDGETS}})
