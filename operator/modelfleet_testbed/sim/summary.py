"""One replay's outcome in numbers: requests, GPU time, cost, SLO attainment, scaling."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import compress
from typing import Any

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.usage import Usage, UsageKey
from modelfleet.plan.billing import (
    pool_lines,
    reservation_hours_lines,
    totals_by,
    usage_lines,
)
from modelfleet_testbed.sim.daily import Hour, days_json
from modelfleet_testbed.sim.outcome import DROP_REASONS, SERVED, ReplayResult
from modelfleet_testbed.sim.workload import Workload

PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest rank on an ascending sequence."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _overlap(begin: float, end: float | None, duration: float) -> float:
    stop = duration if end is None else min(end, duration)
    return max(0.0, stop - max(begin, 0.0))


def replica_seconds(result: ReplayResult) -> tuple[list[float], list[float]]:
    """Per variant: seconds replicas held GPUs (created to gone) and were ready (ready to
    drained), both within the replay."""
    held = [0.0] * len(result.variants)
    ready = [0.0] * len(result.variants)
    for replica in result.replicas:
        held[replica.fleet] += _overlap(replica.created, replica.gone_at, result.duration)
        out = replica.drain_at if replica.drain_at is not None else replica.gone_at
        if out is None or out > replica.ready_at:
            ready[replica.fleet] += _overlap(replica.ready_at, out, result.duration)
    return held, ready


def _latency(values: list[float], target: float | None, total: int) -> dict[str, Any]:
    values.sort()
    out: dict[str, Any] = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    out["mean"] = sum(values) / len(values) if values else None
    out["targetSeconds"] = target
    if target is not None:
        met = sum(1 for v in values if v <= target)
        out["attainment"] = met / total if total else None
    return out


def _slo(result: ReplayResult, policy: RoutingPolicy) -> dict[str, Any]:
    routes = policy.spec.routes
    ttft: list[list[float]] = [[] for _ in routes]
    e2e: list[list[float]] = [[] for _ in routes]
    served = zip(result.route_of, result.ttft, result.e2e, strict=True)
    for route, first_token, whole in compress(served, _served(result)):
        ttft[route].append(first_token)
        e2e[route].append(whole)
    counts = Counter(result.route_of)
    degraded = Counter(compress(result.route_of, result.degraded))
    out = {}
    for index, route in enumerate(routes):
        total = counts.get(index, 0)
        if not total:
            continue
        slo = route.slo
        out[route.name] = {
            "requests": total,
            "served": len(ttft[index]),
            "degraded": degraded.get(index, 0),
            "ttft": _latency(ttft[index], slo.ttft_seconds if slo else None, total),
            "e2e": _latency(e2e[index], slo.e2e_seconds if slo else None, total),
        }
    return out


def _overall_attainment(slo: dict[str, Any], kind: str) -> float | None:
    met = total = 0.0
    for route in slo.values():
        attainment = route[kind].get("attainment")
        if attainment is not None:
            met += attainment * route["requests"]
            total += route["requests"]
    return met / total if total else None


def served_usage(result: ReplayResult, workload: Workload) -> dict[UsageKey, Usage]:
    """What the gateway would have counted: per tenant and variant, the answered requests
    and their prompt and completion tokens (the simulation has no API keys: key "")."""
    prompt, output = workload.arrivals.prompt_tokens, workload.arrivals.output_tokens
    # Whole numbers, summed as such: the float totals of the same counts are the same
    # (they stay far below 2**53).
    counts: dict[tuple[int, int], list[int]] = {}
    served = zip(workload.tenant_of, result.variant_of, prompt, output, strict=True)
    for tenant, variant, prompt_tokens, output_tokens in compress(served, _served(result)):
        entry = counts.get((tenant, variant))
        if entry is None:
            entry = counts[(tenant, variant)] = [0, 0, 0]
        entry[0] += 1
        entry[1] += prompt_tokens
        entry[2] += output_tokens
    return {
        UsageKey(workload.tenants[t], "", result.variants[v]): Usage(*map(float, entry))
        for (t, v), entry in sorted(counts.items())
    }


def _served(result: ReplayResult) -> bytes:
    """Per request, 1 when it was served: a mask for itertools.compress (the report reads
    each of a week's million requests several times)."""
    return result.status.translate(_SERVED_MASK)


_SERVED_MASK = bytes(int(code == SERVED) for code in range(256))


def _costs(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    held_hours: dict[str, float],
    usage: dict[UsageKey, Usage],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    fleet = pool_lines(pool, held_hours)
    tenants = reservation_hours_lines(reservations, start, end) + usage_lines(
        pool, reservations, start, end, usage
    )
    return {
        "pool": {
            line.variant: {
                "replicaHours": line.quantity,
                "costPerReplicaHour": line.unit_price,
                "amount": line.amount,
            }
            for line in fleet
        },
        "poolTotal": sum(line.amount for line in fleet),
        "billing": [
            {
                "tenant": line.tenant,
                "variant": line.variant,
                "mode": line.mode,
                "item": line.item,
                "quantity": line.quantity,
                "unitPrice": line.unit_price,
                "amount": line.amount,
                "currency": line.currency,
            }
            for line in tenants
        ],
        "byMode": {mode: amount for (mode,), amount in totals_by(tenants, "mode").items()},
        "byTenant": {tenant: amount for (tenant,), amount in totals_by(tenants, "tenant").items()},
    }


def _timeline(result: ReplayResult, bucket: float) -> list[dict[str, Any]]:
    rows: dict[int, list] = {}
    for point in result.series:
        rows.setdefault(int(point.t // bucket), []).append(point)
    timeline = []
    for index in sorted(rows):
        points = rows[index]
        variants = {}
        for v, name in enumerate(result.variants):
            waiting = [p.waiting[v] for p in points if p.waiting[v] is not None]
            variants[name] = {
                "meanReplicas": sum(p.allocated[v] for p in points) / len(points),
                "meanReady": sum(p.ready[v] for p in points) / len(points),
                "maxWaiting": max(waiting) if waiting else None,
                "meanWaiting": sum(waiting) / len(waiting) if waiting else None,
            }
        timeline.append({"t": index * bucket, "variants": variants})
    return timeline


def timeline_bucket(duration: float, refresh: float) -> float:
    if duration >= 2 * 86400:
        return 3600.0
    if duration >= 2 * 3600:
        return 300.0
    return refresh


def summarize(
    name: str,
    description: str,
    result: ReplayResult,
    workload: Workload,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    policy: RoutingPolicy,
    start: datetime,
    hours: Sequence[Hour],
) -> dict[str, Any]:
    status = Counter(result.status)
    total = len(result.status)
    served = status.get(SERVED, 0)
    held, ready = replica_seconds(result)
    variants = pool.spec.variants
    held_hours = {v.name: held[i] / 3600 for i, v in enumerate(variants)}
    ready_hours = {v.name: ready[i] / 3600 for i, v in enumerate(variants)}
    tenant_counts = Counter(zip(workload.tenant_of, result.status, strict=True))
    usage = served_usage(result, workload)
    end = start + timedelta(seconds=result.duration)
    cost = _costs(pool, reservations, held_hours, usage, start, end)
    tenants = {}
    for index, tenant in enumerate(workload.tenants):
        theirs = [u for key, u in usage.items() if key.tenant == tenant]
        tenants[tenant] = {
            "requests": sum(n for (t, _), n in tenant_counts.items() if t == index),
            "served": tenant_counts.get((index, SERVED), 0),
            "promptTokens": sum(u.prompt_tokens for u in theirs),
            "completionTokens": sum(u.completion_tokens for u in theirs),
            "billed": cost["byTenant"].get(tenant, 0.0),
        }
    served_by_variant = Counter(compress(result.variant_of, _served(result)))
    per_variant = {}
    for index, variant in enumerate(variants):
        allocated = [p.allocated[index] for p in result.series]
        waiting = [p.waiting[index] for p in result.series if p.waiting[index] is not None]
        events = [e for e in result.scale_events if e.variant == variant.name]
        per_variant[variant.name] = {
            "served": served_by_variant.get(index, 0),
            "replicaHours": held_hours[variant.name],
            "readyReplicaHours": ready_hours[variant.name],
            "gpuHours": held_hours[variant.name] * variant.gpus_per_replica,
            "peakReplicas": max(allocated, default=0),
            "minReplicas": min(allocated, default=0),
            "maxWaiting": max(waiting, default=None),
            "meanWaiting": sum(waiting) / len(waiting) if waiting else None,
            "scaleUps": sum(1 for e in events if e.after > e.before),
            "scaleDowns": sum(1 for e in events if e.after < e.before),
        }
    slo = _slo(result, policy)
    peak_gpus = max(
        (
            sum(p.allocated[i] * v.gpus_per_replica for i, v in enumerate(variants))
            for p in result.series
        ),
        default=0,
    )
    return {
        "name": name,
        "description": description,
        "requests": {
            "total": total,
            "served": served,
            "dropped": {reason: status.get(code, 0) for code, reason in DROP_REASONS.items()},
        },
        "gpuHours": sum(per_variant[v.name]["gpuHours"] for v in variants),
        "peakGpus": peak_gpus,
        "gpuBudget": pool.spec.gpu_budget,
        "variants": per_variant,
        "cost": cost,
        "tenants": tenants,
        "slo": slo,
        "sloAttainment": {
            "ttft": _overall_attainment(slo, "ttft"),
            "e2e": _overall_attainment(slo, "e2e"),
        },
        "days": days_json(hours),
        "scaleEvents": [
            {
                "at": (start + timedelta(seconds=e.t)).isoformat(),
                "t": e.t,
                "variant": e.variant,
                "from": e.before,
                "to": e.after,
                "reason": e.reason,
                "message": e.message,
                **(
                    {"readyAt": (start + timedelta(seconds=e.ready_at)).isoformat()}
                    if e.ready_at is not None
                    else {}
                ),
            }
            for e in result.scale_events
        ],
        "timeline": _timeline(
            result, timeline_bucket(result.duration, float(pool.spec.metrics.refresh_seconds))
        ),
    }
