"""Samples what the operator decided and what it cost, for the live view and the report."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelfleet_testbed.local.store import ObjectStore

POOLS = "modelfleet.io/v1alpha1/modelpools"
POLICIES = "modelfleet.io/v1alpha1/routingpolicies"
EVENTS = "v1/events"


@dataclass
class Sample:
    wall: float
    hour: float
    phase: str
    variants: dict[str, dict[str, Any]]
    routes: dict[str, dict[str, int]]
    gpus_planned: int
    gpu_budget: int
    cost_by_mode: dict[str, float]
    requests_per_second: float
    # Each budget ("tenant/period", "tenant/key/period") as the RoutingPolicy's status has it.
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def read_pool_state(store: ObjectStore, namespace: str, pool: str, policy: str):
    """(per-variant status, effective routes, GPUs planned, GPU budget, money budgets) from
    the cluster."""
    body = store.get(POOLS, namespace, pool) or {}
    status = body.get("status") or {}
    variants = {
        v["name"]: {
            "desired": v.get("desiredReplicas", 0),
            "ready": v.get("readyReplicas") or 0,
            "reason": v.get("reason", ""),
            "waiting": (v.get("observed") or {}).get("waiting") or 0,
            "p99": (v.get("observed") or {}).get("p99LatencySeconds"),
        }
        for v in status.get("variants", [])
    }
    routing = (store.get(POLICIES, namespace, policy) or {}).get("status") or {}
    routes = {
        r["name"]: {b["variant"]: b["weight"] for b in r.get("backends", [])}
        for r in routing.get("routes", [])
    }
    budget = (body.get("spec") or {}).get("gpuBudget", 0)
    budgets = {
        "/".join(filter(None, (b["tenant"], b.get("keyId"), b["period"]))): {
            "state": b["state"],
            "spend": b.get("spend"),
            "amount": b["amount"],
            "action": b["action"],
            "currency": b["currency"],
            "resets_at": b.get("resetsAt"),
        }
        for b in routing.get("budgets", [])
    }
    return variants, routes, status.get("gpusPlanned", 0), budget, budgets


def scale_events(store: ObjectStore, namespace: str) -> list[dict[str, Any]]:
    events = [e for e in store.list(EVENTS, namespace) if e.get("reason") == "Scaled"]
    events.sort(key=lambda e: e.get("metadata", {}).get("creationTimestamp", ""))
    return [
        {"time": e["metadata"].get("creationTimestamp"), "message": e.get("message", "")}
        for e in events
    ]


def budget_events(store: ObjectStore, namespace: str) -> list[dict[str, Any]]:
    """The budgets' Events (soft limit reached, exceeded, reset), oldest first."""
    events = [e for e in store.list(EVENTS, namespace) if e.get("reason", "").startswith("Budget")]
    events.sort(key=lambda e: e.get("metadata", {}).get("creationTimestamp", ""))
    return [
        {
            "time": e["metadata"].get("creationTimestamp"),
            "reason": e["reason"],
            "message": e.get("message", ""),
        }
        for e in events
    ]


def tokens_by_tenant(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Prometheus' answers to `sum by (tenant) (envoy_modelfleet_<name>)` per counter name ->
    per tenant: requests with usage, prompt and completion tokens."""
    tenants: dict[str, dict[str, float]] = defaultdict(
        lambda: {"requests": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    )
    for name, vector in results.items():
        for sample in vector:
            tenant = sample["metric"].get("tenant") or "(none)"
            tenants[tenant][name] = float(sample["value"][1])
    return dict(sorted(tenants.items()))


def operator_costs(metrics_url: str) -> list[dict[str, Any]]:
    """The operator's cost counters: one row per (variant, tenant, mode, item)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return []
    rows = []
    for family in text_string_to_metric_families(text):
        if family.name != "modelfleet_cost_accrued":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                rows.append({**sample.labels, "amount": sample.value})
    return rows


def cost_by(rows: list[dict[str, Any]], *keys: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        totals["/".join(row.get(k) or "-" for k in keys)] += row["amount"]
    return dict(totals)
