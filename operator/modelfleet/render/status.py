"""Pure: plans and live state -> the `status` the operator writes; and back.

The pool's status is the operator's memory: a restarted operator reads the previous plan
(desired counts, recommendation history, last scale times) from it, so a restart alone
changes no replica count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelfleet.api.load import InputError
from modelfleet.plan.scaling.types import (
    PlanCondition,
    PoolPlan,
    PreviousPlan,
    PreviousVariant,
    Recommendation,
    ReservationGrant,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[PlanCondition],
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """metav1.Conditions: lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        changed = old is None or old.get("status") != condition.status
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": _time(now) if changed else old.get("lastTransitionTime"),
                "observedGeneration": generation,
            }
        )
    return merged


def ready_condition(plan: PoolPlan, ready: Mapping[str, int]) -> PlanCondition:
    behind = [
        f"{v.name} {ready.get(v.name, 0)}/{v.desired_replicas}"
        for v in plan.variants
        if ready.get(v.name, 0) < v.desired_replicas
    ]
    if behind:
        return PlanCondition(
            "Ready", "False", "ReplicasNotReady", "not ready: " + ", ".join(behind)
        )
    return PlanCondition("Ready", "True", "AllReplicasReady", "every variant has its replicas")


def pool_status(
    plan: PoolPlan,
    ready: Mapping[str, int],
    generation: int | None,
    previous_conditions: Sequence[Mapping[str, Any]] | None,
    metrics_error: str | None = None,
) -> dict[str, Any]:
    conditions = [ready_condition(plan, ready)]
    for condition in plan.conditions:
        if condition.type == "MetricsAvailable" and metrics_error:
            condition = PlanCondition(
                "MetricsAvailable", "False", "PrometheusUnavailable", metrics_error
            )
        conditions.append(condition)
    variants = []
    for v in plan.variants:
        obs = v.observation
        variants.append(
            {
                "name": v.name,
                "desiredReplicas": v.desired_replicas,
                "readyReplicas": ready.get(v.name, 0),
                "reason": v.reason,
                "message": v.message,
                "gpus": v.gpus,
                "waiting": obs.waiting if obs else None,
                "running": obs.running if obs else None,
                "qps": obs.qps if obs else None,
                "p99LatencySeconds": obs.p99_latency_seconds if obs else None,
                "errorRate": obs.error_rate if obs else None,
                "sampledAt": _time(obs.sampled_at) if obs else None,
                "lastScaleTime": _time(v.last_scale_time),
                "recommendations": [
                    {"at": _time(r.at), "replicas": r.replicas} for r in v.recommendations
                ],
            }
        )
    return {
        "observedGeneration": generation,
        "plannedAt": _time(plan.at),
        "desiredReplicas": plan.desired_replicas,
        "readyReplicas": sum(ready.get(v.name, 0) for v in plan.variants),
        "gpusPlanned": plan.gpus_planned,
        "variants": variants,
        "conditions": merge_conditions(previous_conditions, conditions, plan.at, generation),
    }


def errors_message(errors: Sequence[InputError], limit: int = 4000) -> str:
    return "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors)[:limit]


def invalid_spec_status(
    errors: Sequence[InputError],
    generation: int | None,
    previous_conditions: Sequence[Mapping[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    """Only conditions change: the last good plan stays in status and in the cluster."""
    invalid = PlanCondition("Ready", "False", "InvalidSpec", errors_message(errors))
    others = [c for c in previous_conditions or [] if c.get("type") != "Ready"]
    return {
        "conditions": [*others, *merge_conditions(previous_conditions, [invalid], now, generation)]
    }


def previous_from_status(status: Mapping[str, Any] | None) -> PreviousPlan | None:
    if not status or not status.get("plannedAt"):
        return None
    at = datetime.fromisoformat(status["plannedAt"])
    variants = {}
    for entry in status.get("variants") or []:
        history = tuple(
            Recommendation(datetime.fromisoformat(r["at"]), int(r["replicas"]))
            for r in entry.get("recommendations") or []
        )
        last = entry.get("lastScaleTime")
        variants[entry["name"]] = PreviousVariant(
            desired_replicas=int(entry.get("desiredReplicas", 0)),
            recommendations=history,
            last_scale_time=datetime.fromisoformat(last) if last else None,
        )
    return PreviousPlan(at, variants)


def reservation_status(
    grant: ReservationGrant,
    generation: int | None,
    overcommitted: bool,
    previous_conditions: Sequence[Mapping[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    message = grant.message
    if grant.granted and overcommitted:
        message += "; the pool's floors exceed its gpuBudget (Overcommitted)"
    reason = "Granted" if grant.granted else ("NotActive" if not grant.active else "NotGranted")
    condition = PlanCondition("Granted", "True" if grant.granted else "False", reason, message)
    return {
        "observedGeneration": generation,
        "granted": grant.granted,
        "active": grant.active,
        "grantedReplicas": grant.granted_replicas,
        "message": message,
        "conditions": merge_conditions(previous_conditions, [condition], now, generation),
    }
