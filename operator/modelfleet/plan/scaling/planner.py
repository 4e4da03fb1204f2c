"""The scaling planner: (spec, reservations, observations, now, previous) -> PoolPlan. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from modelfleet.api.cron import zone
from modelfleet.api.modelpool import ModelPool, StepPolicy, Variant, default_scale_down
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import Observations, variant_key
from modelfleet.plan.scaling.signals import (
    SIGNALS,
    VariantContext,
    active_schedules,
    metrics_problem,
    minute_load,
    observation_problem,
    uses_metrics,
)
from modelfleet.plan.scaling.slo import learn_capacity, slo_reading
from modelfleet.plan.scaling.types import (
    PlanCondition,
    PoolPlan,
    PreviousPlan,
    PreviousVariant,
    Recommendation,
    ReservationGrant,
    SignalResult,
    SloTarget,
    VariantPlan,
)


class Decision(NamedTuple):
    replicas: int
    reason: str
    message: str


def combine_signals(variant: Variant, results: Sequence[SignalResult]) -> Decision:
    """desired = clamp(max(signals), min, max); the reason is the signal that decided."""
    low, high = variant.replicas.min, variant.replicas.max
    best = None
    for result in results:
        if best is None or result.replicas > best.replicas:
            best = result
    if best is None or best.replicas < low:
        wanted = "" if best is None else f" ({best.detail})"
        return Decision(low, "min", f"replicas.min {low}{wanted}")
    if best.replicas > high:
        return Decision(
            high, "max", f"capped at replicas.max {high}; wanted {best.replicas}: {best.detail}"
        )
    return Decision(best.replicas, best.reason, best.detail)


def _within(recommendations: Sequence[Recommendation], now: datetime, seconds: int) -> list[int]:
    horizon = now - timedelta(seconds=seconds)
    return [r.replicas for r in recommendations if r.at >= horizon]


def stabilize(
    decision: Decision,
    current: int | None,
    history: Sequence[Recommendation],
    now: datetime,
    up: StepPolicy,
    down: StepPolicy,
    floor: int,
    ceiling: int,
) -> Decision:
    """HPA-style: move only as far as every recommendation in the window agrees, then at most
    maxStep per cycle; never below the floor, never above replicas.max (which may have been
    lowered since the previous plan)."""
    if current is None or decision.replicas == current:
        return decision
    raw = decision.replicas
    if raw > current:
        agreed = max(current, min(_within(history, now, up.stabilization_seconds)))
        limited = agreed if up.max_step is None else min(agreed, current + up.max_step)
    else:
        agreed = min(current, max(_within(history, now, down.stabilization_seconds)))
        limited = agreed if down.max_step is None else max(agreed, current - down.max_step)
    limited = min(max(limited, floor), ceiling)
    if limited == raw:
        return decision
    if limited != agreed:
        step = up.max_step if raw > current else down.max_step
        why = f"step limit {step} per cycle"
    else:
        window = up.stabilization_seconds if raw > current else down.stabilization_seconds
        why = f"waiting out the {window}s stabilization window"
    move = f"holding {current}" if limited == current else f"{current} -> {limited}"
    return Decision(limited, "stabilizing", f"{move} toward {raw} ({why}); {decision.message}")


def _history(previous: PreviousVariant | None, now: datetime, keep_seconds: int, raw: int):
    """The recommendations the stabilization windows can still use, with this one.

    Every window ends now, so a later recommendation stays in a window at least as long as
    an earlier one: an earlier one with a later one at least as high and a later one at
    least as low can never be a window's max or min again, and is dropped. The windows
    decide exactly as with the whole history; the status keeps a handful of entries."""
    horizon = now - timedelta(seconds=keep_seconds)
    kept = [r for r in previous.recommendations if horizon <= r.at < now] if previous else []
    kept.append(Recommendation(now, raw))
    useful = []
    low = high = raw
    for recommendation in reversed(kept):
        value = recommendation.replicas
        if recommendation.at == now or value > high or value < low:
            useful.append(recommendation)
        low, high = min(low, value), max(high, value)
    return tuple(reversed(useful))


def _active_reservations(
    reservations: Sequence[Reservation], variant: str, now: datetime
) -> list[Reservation]:
    return [r for r in reservations if r.spec.variant == variant and r.spec.active_at(now)]


def _context(
    pool: ModelPool,
    variant: Variant,
    reservations: Sequence[Reservation],
    observations: Observations,
    now: datetime,
    previous: PreviousVariant | None,
    slo: SloTarget | None,
) -> VariantContext:
    observation = observations.get(variant_key(pool.namespace, pool.name, variant.name))
    stale_after = pool.spec.metrics.stale_after_seconds
    problem = observation_problem(observation, now, stale_after)
    reading = capacity = None
    if slo is not None and variant.slo.enabled:
        # The learned capacity is the slo signal's memory; it learns only from fresh metrics.
        fresh = problem is None
        reading = slo_reading(slo, observation) if fresh else None
        capacity = learn_capacity(
            variant,
            reading,
            observation if fresh else None,
            previous.capacity if previous else None,
            now,
            minute_load(observation) if fresh else None,
        )
    return VariantContext(
        variant=variant,
        timezone=zone(pool.spec.timezone),
        now=now,
        observation=observation,
        active_reservations=_active_reservations(reservations, variant.name, now),
        stale_after_seconds=stale_after,
        previous=previous,
        refresh_seconds=float(pool.spec.metrics.refresh_seconds),
        slo=slo,
        reading=reading,
        capacity=capacity,
        problem=problem,
    )


def _step_policies(ctx: VariantContext) -> tuple[StepPolicy, StepPolicy]:
    """The queue's step policies; a variant scaled by slo or forecast without a queue
    section scales down through the same default window."""
    queue = ctx.variant.queue
    if queue is not None:
        return queue.scale_up, queue.scale_down
    if uses_metrics(ctx):
        return StepPolicy(), default_scale_down()
    return StepPolicy(), StepPolicy()


def plan_variant(
    pool: ModelPool,
    variant: Variant,
    reservations: Sequence[Reservation],
    observations: Observations,
    now: datetime,
    previous: PreviousVariant | None,
    slo: SloTarget | None = None,
) -> VariantPlan:
    ctx = _context(pool, variant, reservations, observations, now, previous, slo)
    results = tuple([result for signal in SIGNALS if (result := signal(ctx)) is not None])
    decision = combine_signals(variant, results)
    reservation_floor = sum(r.spec.replicas for r in ctx.active_reservations)
    floor = min(max(variant.replicas.min, reservation_floor), variant.replicas.max)
    up, down = _step_policies(ctx)
    keep = max(up.stabilization_seconds, down.stabilization_seconds)
    history = _history(previous, now, keep, decision.replicas)
    current = previous.desired_replicas if previous else None
    decision = stabilize(decision, current, history, now, up, down, floor, variant.replicas.max)
    changed = current is not None and decision.replicas != current
    return VariantPlan(
        name=variant.name,
        desired_replicas=decision.replicas,
        reason=decision.reason,
        message=decision.message,
        priority=variant.priority,
        gpus_per_replica=variant.gpus_per_replica,
        floor=floor,
        signals=results,
        active_schedules=tuple(s.name for s in active_schedules(ctx)),
        recommendations=history,
        last_scale_time=now if changed else (previous.last_scale_time if previous else None),
        observation=ctx.observation,
        metrics_problem=metrics_problem(ctx) if uses_metrics(ctx) else None,
        capacity=ctx.capacity,
        slo_need=next((r.replicas for r in results if r.reason == "slo"), None),
    )


def _slo_floor(plan: VariantPlan) -> int:
    """Replicas the budget takes last: what the SLOs need now (never above the plan)."""
    need = plan.slo_need if plan.slo_need is not None else 0
    return min(plan.desired_replicas, max(plan.floor, need))


def fit_budget(
    variants: list[VariantPlan], budget: int, previous: PreviousPlan | None, now: datetime
) -> tuple[list[VariantPlan], bool]:
    """Cut toward the floors until the pool fits its GPU budget, where it costs the least
    SLO: first replicas no SLO needs now (a variant's plan above its slo signal's count, or
    any replica of a variant without an SLO), then replicas its SLO needs; within each
    round the lowest priority first (later in the spec on ties). Returns the plans and
    whether the floors alone overflow."""
    plans = list(variants)
    excess = sum(p.gpus for p in plans) - budget
    spare = {p.name: _slo_floor(p) for p in plans}
    for into_slo in (False, True):
        while excess > 0:
            stop = {p.name: p.floor if into_slo else max(p.floor, spare[p.name]) for p in plans}
            cuttable = [i for i, p in enumerate(plans) if p.desired_replicas > stop[p.name]]
            if not cuttable:
                break
            index = min(cuttable, key=lambda i: (plans[i].priority, -i))
            plan = plans[index]
            room = plan.desired_replicas - stop[plan.name]
            take = min(math.ceil(excess / plan.gpus_per_replica), room)
            desired = plan.desired_replicas - take
            before = previous.variants.get(plan.name) if previous else None
            changed = before is not None and before.desired_replicas != desired
            why = (
                f"into the {spare[plan.name]} its SLO needs"
                if into_slo and plan.slo_need
                else "above what its SLO needs"
                if plan.slo_need
                else f"priority {plan.priority}"
            )
            if plan.slo_need:
                why = f"priority {plan.priority}, {why}"
            plans[index] = plan._replace(
                desired_replicas=desired,
                reason="budget",
                message=f"cut from {plan.desired_replicas} to {desired} to fit gpuBudget "
                f"{budget} ({why}); {plan.message}",
                last_scale_time=now if changed else (before.last_scale_time if before else None),
            )
            excess -= take * plan.gpus_per_replica
    return plans, excess > 0


def _conditions(pool: ModelPool, plans: Sequence[VariantPlan], overcommitted: bool):
    gpus = sum(p.gpus for p in plans)
    budget = pool.spec.gpu_budget
    floors = sum(p.floor * p.gpus_per_replica for p in plans)
    yield PlanCondition(
        "Overcommitted",
        "True" if overcommitted else "False",
        "FloorsExceedBudget" if overcommitted else "WithinBudget",
        f"floors (min and reservations) need {floors} GPUs, budget is {budget}"
        if overcommitted
        else f"{gpus} of {budget} GPUs planned",
    )
    limited = [p for p in plans if p.reason in ("budget", "max")]
    yield PlanCondition(
        "CapacityLimited",
        "True" if limited else "False",
        "BudgetOrMaxReached" if limited else "Unconstrained",
        "; ".join(f"{p.name}: {p.reason}" for p in limited) or "no variant is held back",
    )
    problems = [p for p in plans if p.metrics_problem]
    yield PlanCondition(
        "MetricsAvailable",
        "False" if problems else "True",
        "MetricsUnavailable" if problems else "MetricsFresh",
        "; ".join(f"{p.name}: {p.metrics_problem}" for p in problems)
        or "queue metrics are fresh for every variant scaled on metrics",
    )


def _grant(reservation: Reservation, active: bool, granted: int, message: str) -> ReservationGrant:
    spec = reservation.spec
    return ReservationGrant(
        reservation.namespace,
        reservation.name,
        spec.tenant,
        spec.variant,
        spec.replicas,
        active,
        active and granted == spec.replicas,
        granted,
        message,
    )


def grant_reservations(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    now: datetime,
) -> tuple[ReservationGrant, ...]:
    """Reservations are granted in name order while they fit under the variant's max."""
    grants = []
    room = {v.name: v.replicas.max for v in pool.spec.variants}
    for reservation in sorted(reservations, key=lambda r: r.name):
        variant, wanted = reservation.spec.variant, reservation.spec.replicas
        if variant not in room:
            message = f"pool {pool.name} has no variant {variant}"
            grants.append(_grant(reservation, reservation.spec.active_at(now), 0, message))
            continue
        if not reservation.spec.active_at(now):
            window = reservation.spec.window
            message = (
                f"window opens at {window.start.isoformat()}"
                if window and window.start and now < window.start
                else "window has closed"
            )
            grants.append(_grant(reservation, False, 0, message))
            continue
        granted = min(wanted, room[variant])
        room[variant] -= granted
        message = (
            f"{granted} replicas of {variant} held"
            if granted == wanted
            else f"only {granted} of {wanted} fit under {variant}'s replicas.max: "
            "raise replicas.max or lower the reservation"
        )
        grants.append(_grant(reservation, True, granted, message))
    return tuple(grants)


def plan_pool(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    observations: Observations,
    now: datetime,
    previous: PreviousPlan | None = None,
    slos: Mapping[str, SloTarget] | None = None,
) -> PoolPlan:
    """The whole pool's plan at `now`. `reservations` may include other pools' (ignored);
    `slos`: per variant, the strictest SLOs of the routes sending to it (slo_targets)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    own = [r for r in reservations if r.namespace == pool.namespace and r.spec.pool == pool.name]
    plans = [
        plan_variant(
            pool,
            variant,
            own,
            observations,
            now,
            previous.variants.get(variant.name) if previous else None,
            (slos or {}).get(variant.name),
        )
        for variant in pool.spec.variants
    ]
    plans, overcommitted = fit_budget(plans, pool.spec.gpu_budget, previous, now)
    return PoolPlan(
        namespace=pool.namespace,
        name=pool.name,
        at=now,
        gpu_budget=pool.spec.gpu_budget,
        variants=tuple(plans),
        conditions=tuple(_conditions(pool, plans, overcommitted)),
        reservations=grant_reservations(pool, own, now),
    )
