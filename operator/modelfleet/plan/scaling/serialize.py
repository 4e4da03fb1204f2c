"""PoolPlan <-> the JSON of `modelfleet plan -o json` (also what --previous reads back)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.scaling.types import (
    PoolPlan,
    PreviousPlan,
    PreviousVariant,
    Recommendation,
    VariantPlan,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _observation_json(obs: VariantObservation | None) -> dict[str, Any] | None:
    if obs is None:
        return None
    return {
        "readyReplicas": obs.ready_replicas,
        "running": obs.running,
        "waiting": obs.waiting,
        "qps": obs.qps,
        "p99LatencySeconds": obs.p99_latency_seconds,
        "errorRate": obs.error_rate,
        "sampledAt": _time(obs.sampled_at),
    }


def variant_plan_json(plan: VariantPlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "desiredReplicas": plan.desired_replicas,
        "reason": plan.reason,
        "message": plan.message,
        "floor": plan.floor,
        "priority": plan.priority,
        "gpusPerReplica": plan.gpus_per_replica,
        "gpus": plan.gpus,
        "readyReplicas": plan.observation.ready_replicas if plan.observation else None,
        "activeSchedules": list(plan.active_schedules),
        "signals": [
            {"reason": s.reason, "replicas": s.replicas, "detail": s.detail} for s in plan.signals
        ],
        "observed": _observation_json(plan.observation),
        "lastScaleTime": _time(plan.last_scale_time),
        "recommendations": [
            {"at": r.at.isoformat(), "replicas": r.replicas} for r in plan.recommendations
        ],
    }


def pool_plan_json(plan: PoolPlan) -> dict[str, Any]:
    return {
        "namespace": plan.namespace,
        "name": plan.name,
        "gpuBudget": plan.gpu_budget,
        "gpusPlanned": plan.gpus_planned,
        "desiredReplicas": plan.desired_replicas,
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in plan.conditions
        ],
        "variants": [variant_plan_json(v) for v in plan.variants],
        "reservations": [
            {
                "namespace": g.namespace,
                "name": g.name,
                "tenant": g.tenant,
                "variant": g.variant,
                "replicas": g.replicas,
                "active": g.active,
                "granted": g.granted,
                "grantedReplicas": g.granted_replicas,
                "message": g.message,
            }
            for g in plan.reservations
        ],
    }


def previous_plans_from_json(data: Any) -> dict[tuple[str, str], PreviousPlan]:
    """Read an earlier `plan -o json` output; raises ValueError naming the bad field."""
    if not isinstance(data, dict) or "at" not in data or "pools" not in data:
        raise ValueError("expected the JSON printed by `modelfleet plan -o json` (keys at, pools)")
    at = _parse_time(data["at"], "at")
    plans: dict[tuple[str, str], PreviousPlan] = {}
    for p_index, pool in enumerate(data["pools"]):
        variants: dict[str, PreviousVariant] = {}
        for v_index, variant in enumerate(pool.get("variants", [])):
            where = f"pools[{p_index}].variants[{v_index}]"
            desired = variant.get("desiredReplicas")
            if not isinstance(desired, int) or desired < 0:
                raise ValueError(f"{where}.desiredReplicas: expected a whole number >= 0")
            history = tuple(
                Recommendation(_parse_time(r["at"], f"{where}.recommendations"), int(r["replicas"]))
                for r in variant.get("recommendations", [])
            ) or (Recommendation(at, desired),)
            last = variant.get("lastScaleTime")
            variants[variant["name"]] = PreviousVariant(
                desired_replicas=desired,
                recommendations=history,
                last_scale_time=_parse_time(last, f"{where}.lastScaleTime") if last else None,
            )
        plans[(pool.get("namespace", "default"), pool["name"])] = PreviousPlan(at, variants)
    return plans


def _parse_time(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: {value!r} has no UTC offset")
    return parsed
