"""The scaling signals. Each has the same shape, like a KEDA scaler:
`(context) -> SignalResult | None`, where None means "no opinion".
They are combined in one place: `planner.combine_signals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from modelfleet.api.cron import last_firing_at_or_before, parse_cron
from modelfleet.api.modelpool import Schedule, Variant
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.scaling.forecast import expected_demand
from modelfleet.plan.scaling.slo import SloReading, capacity_of
from modelfleet.plan.scaling.types import Capacity, PreviousVariant, SignalResult, SloTarget

SCHEDULE_LOOKBACK_DAYS = 8
# The waiting queue is demand too: the slo signal plans to clear it within a minute.
DRAIN_SECONDS = 60
# Missing the SLO now asks for at most this many times the ready replicas at once.
MAX_REACTION = 1.5
# Loads this far apart, all over the SLO, show a floor that replicas cannot lower.
FLOOR_EVIDENCE = 2.0


@dataclass(frozen=True)
class VariantContext:
    variant: Variant
    timezone: ZoneInfo
    now: datetime
    observation: VariantObservation | None
    active_reservations: Sequence[Reservation]
    stale_after_seconds: float
    previous: PreviousVariant | None
    refresh_seconds: float = 30.0
    slo: SloTarget | None = None  # the routes' strictest SLOs, if any route declares one
    reading: SloReading | None = None  # how close to them it runs now (enough requests)
    capacity: Capacity | None = None  # per-replica capacity within them, learned


Signal = Callable[[VariantContext], SignalResult | None]


def schedule_is_active(schedule: Schedule, tz: ZoneInfo, now: datetime) -> bool:
    """Active iff the latest `start` firing <= now is later than the latest `end` firing."""
    last_start = last_firing_at_or_before(
        parse_cron(schedule.start), tz, now, SCHEDULE_LOOKBACK_DAYS
    )
    if last_start is None:
        return False
    last_end = last_firing_at_or_before(parse_cron(schedule.end), tz, now, SCHEDULE_LOOKBACK_DAYS)
    return last_end is None or last_start > last_end


def active_schedules(ctx: VariantContext) -> list[Schedule]:
    return [s for s in ctx.variant.schedules if schedule_is_active(s, ctx.timezone, ctx.now)]


def schedule_signal(ctx: VariantContext) -> SignalResult | None:
    active = active_schedules(ctx)
    if not active:
        return None
    top = max(active, key=lambda s: s.replicas)
    return SignalResult("schedule", top.replicas, f"schedule {top.name} active: {top.replicas}")


def reservation_signal(ctx: VariantContext) -> SignalResult | None:
    if not ctx.active_reservations:
        return None
    total = sum(r.spec.replicas for r in ctx.active_reservations)
    names = ", ".join(f"{r.name}={r.spec.replicas}" for r in ctx.active_reservations)
    return SignalResult("reservation", total, f"reservations {names}: {total}")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metrics_problem(ctx: VariantContext) -> str | None:
    """Why the metric signals cannot trust the observation now, or None if they can."""
    obs = ctx.observation
    if obs is None or (obs.running is None and obs.waiting is None):
        return "no queue metrics"
    if any(v is not None and not math.isfinite(v) for v in (obs.running, obs.waiting, obs.qps)):
        return "queue metrics are not finite numbers"
    if obs.sampled_at is None:
        return "queue metrics have no sample time"
    age = (ctx.now - obs.sampled_at).total_seconds()
    if age > ctx.stale_after_seconds:
        return f"queue metrics are {age:.0f}s old (limit {ctx.stale_after_seconds:.0f}s)"
    return None


def slo_active(ctx: VariantContext) -> bool:
    return ctx.variant.slo.enabled and ctx.slo is not None


def uses_metrics(ctx: VariantContext) -> bool:
    """Whether a signal of the variant reads the live metrics (queue, slo, forecast)."""
    return ctx.variant.queue is not None or slo_active(ctx) or ctx.variant.forecast is not None


def hold_signal(ctx: VariantContext) -> SignalResult | None:
    """Never scale down blind: when the metric signals cannot read the metrics, keep what
    runs now (the ready count, else the previous plan)."""
    if not uses_metrics(ctx):
        return None
    problem = metrics_problem(ctx)
    if problem is None:
        return None
    ready = ctx.observation.ready_replicas if ctx.observation else None
    if ready is None and ctx.previous is not None:
        ready = ctx.previous.desired_replicas
    if ready is None:
        return None
    return SignalResult("hold", ready, f"{problem}; holding {ready} replicas")


def slo_signal(ctx: VariantContext) -> SignalResult | None:
    """Replicas for the demand at what one replica carries within the SLOs; more at once
    while the p99 misses, and no fewer than ready unless it is inside the headroom."""
    if not slo_active(ctx) or metrics_problem(ctx) is not None:
        return None
    obs = ctx.observation
    assert obs is not None and ctx.slo is not None
    qps = _finite(obs.qps)
    if qps is None:
        return None
    waiting = obs.waiting or 0.0
    demand = qps + waiting / DRAIN_SECONDS
    capacity = ctx.capacity
    per_replica = capacity.per_replica if capacity else None
    replicas = None
    why = ""
    if per_replica:
        replicas = math.ceil(demand / per_replica - 1e-9)
        backlog = f" + {waiting:g} waiting over {DRAIN_SECONDS} s" if waiting else ""
        why = (
            f"{demand:.3g} req/s ({qps:.3g} served{backlog}) / {per_replica:.3g} per replica "
            f"({capacity.basis}) = {replicas}"
        )
    reading, ready = ctx.reading, obs.ready_replicas or 0
    headroom = ctx.variant.slo.headroom
    if reading is not None and ready:
        # Over the SLO at every load seen, over a range of loads: more replicas would not
        # help. (One load over the SLO is as likely an overload as a floor: react.)
        points = capacity.points if capacity is not None else ()
        floor = (
            bool(points)
            and min(p.ratio for p in points) > 1
            and points[-1].rps >= FLOOR_EVIDENCE * points[0].rps
        )
        if reading.ratio > 1 and not floor:
            reaction = math.ceil(ready * min(reading.ratio, MAX_REACTION) - 1e-9)
            if replicas is None or reaction > replicas:
                replicas = reaction
                why = (
                    f"{reading.detail} misses: {ready} ready x "
                    f"{min(reading.ratio, MAX_REACTION):.2f} = {reaction}"
                )
        elif reading.ratio > headroom and (replicas is None or replicas < ready):
            replicas = ready
            why = f"holding {ready}: {reading.detail} is not inside the {headroom:g} headroom"
    if replicas is None:
        return None
    return SignalResult("slo", replicas, f"slo ({ctx.slo.describe()}): {why}")


def forecast_signal(ctx: VariantContext) -> SignalResult | None:
    """Replicas for the demand seen at the same time a day or a week ago over the next lead
    time, so they are ready before it comes."""
    forecast = ctx.variant.forecast
    obs = ctx.observation
    if forecast is None or obs is None or not obs.demand_history:
        return None
    capacity = capacity_of(ctx.variant, ctx.capacity)
    if capacity.per_replica is None:
        return None
    lead = ctx.variant.forecast_lead_seconds(ctx.refresh_seconds)
    assert lead is not None
    rate_now = _finite(obs.qps) if metrics_problem(ctx) is None else None
    expected = expected_demand(
        obs.demand_history, ctx.now, forecast.lookback_seconds, lead, rate_now
    )
    if expected is None:
        return None
    replicas = math.ceil(expected.rate / capacity.per_replica - 1e-9)
    return SignalResult(
        "forecast",
        replicas,
        f"forecast over the next {lead:g} s: {expected.describe()}; / "
        f"{capacity.per_replica:.3g} per replica ({capacity.basis}) = {replicas}",
    )


def queue_signal(ctx: VariantContext) -> SignalResult | None:
    queue = ctx.variant.queue
    if queue is None or metrics_problem(ctx) is not None:
        return None
    obs = ctx.observation
    assert obs is not None
    load = (obs.running or 0.0) + (obs.waiting or 0.0)
    replicas = math.ceil(load / queue.target_per_replica - 1e-9)
    return SignalResult(
        "queue",
        replicas,
        f"queue: ({obs.running or 0:g} running + {obs.waiting or 0:g} waiting) / "
        f"{queue.target_per_replica:g} per replica = {replicas}",
    )


# Earlier wins a tie: a reservation is a promise, a schedule an intent, the SLO a target,
# the forecast an expectation, the queue a guess; hold stands in when metrics fail.
SIGNALS: tuple[Signal, ...] = (
    reservation_signal,
    schedule_signal,
    slo_signal,
    forecast_signal,
    queue_signal,
    hold_signal,
)
