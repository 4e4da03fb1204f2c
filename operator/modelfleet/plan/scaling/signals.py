"""The scaling signals. Each has the same shape, like a KEDA scaler:
`(context) -> SignalResult | None`, where None means "no opinion".
They are combined in one place: `planner.combine_signals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from modelfleet.api.cron import last_firing_at_or_before, next_firing_after, parse_cron
from modelfleet.api.modelpool import MAX_REPLICAS, Schedule, Variant
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.scaling.forecast import expected_demand, smoothed
from modelfleet.plan.scaling.slo import SloReading, band_at, capacity_of
from modelfleet.plan.scaling.types import Capacity, PreviousVariant, SignalResult, SloTarget

SCHEDULE_LOOKBACK_DAYS = 8
# The waiting queue is demand too: the slo signal plans to clear it within a minute.
DRAIN_SECONDS = 60
# Missing the SLO now asks for at most this many times the ready replicas at once.
MAX_REACTION = 1.5
# Loads this far apart, all over the SLO, show a floor that replicas cannot lower.
FLOOR_EVIDENCE = 2.0


class VariantContext(NamedTuple):
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
    problem: str | None = None  # why the metrics cannot be trusted now (observation_problem)


Signal = Callable[[VariantContext], SignalResult | None]


def _schedule_state(start: str, end: str, tz: ZoneInfo, now: datetime) -> tuple[bool, datetime]:
    """Whether the window is open at `now`, and until when that stays so: the next firing
    of either cron, or the moment a firing drops out of the look-back."""
    lookback = timedelta(days=SCHEDULE_LOOKBACK_DAYS)
    start_cron, end_cron = parse_cron(start), parse_cron(end)
    last_start = last_firing_at_or_before(start_cron, tz, now, SCHEDULE_LOOKBACK_DAYS)
    last_end = last_firing_at_or_before(end_cron, tz, now, SCHEDULE_LOOKBACK_DAYS)
    active = last_start is not None and (last_end is None or last_start > last_end)
    changes = [
        moment
        for moment in (
            next_firing_after(start_cron, tz, now, SCHEDULE_LOOKBACK_DAYS),
            next_firing_after(end_cron, tz, now, SCHEDULE_LOOKBACK_DAYS),
            last_start + lookback if last_start else None,
            last_end + lookback if last_end else None,
        )
        if moment is not None
    ]
    return active, min(changes, default=now + lookback)


# (start, end, zone) -> (checked at, open?, unchanged until): a schedule's state changes only
# at a firing, so the planner, which runs every cycle, evaluates its crons once per firing.
_SCHEDULE_STATES: dict[tuple[str, str, str], tuple[datetime, bool, datetime]] = {}
_SCHEDULE_STATES_LIMIT = 4096


def schedule_is_active(schedule: Schedule, tz: ZoneInfo, now: datetime) -> bool:
    """Active iff the latest `start` firing <= now is later than the latest `end` firing
    (a firing older than the look-back does not count)."""
    key = (schedule.start, schedule.end, str(tz))
    known = _SCHEDULE_STATES.get(key)
    if known is not None and known[0] <= now < known[2]:
        return known[1]
    active, until = _schedule_state(schedule.start, schedule.end, tz, now)
    if len(_SCHEDULE_STATES) >= _SCHEDULE_STATES_LIMIT:
        _SCHEDULE_STATES.clear()
    _SCHEDULE_STATES[key] = (now, active, until)
    return active


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


def replicas_for(wanted: float) -> int:
    """The replicas a signal asks for `wanted` replicas' worth of load; above any replica
    range it says MAX_REPLICAS instead of an absurd count."""
    return MAX_REPLICAS if wanted > MAX_REPLICAS else math.ceil(wanted - 1e-9)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def observation_problem(
    obs: VariantObservation | None, now: datetime, stale_after_seconds: float
) -> str | None:
    """Why the metric signals cannot trust the observation now, or None if they can."""
    if obs is not None and obs.problem:
        return obs.problem
    if obs is None or (obs.running is None and obs.waiting is None):
        return "no queue metrics"
    if any(v is not None and not math.isfinite(v) for v in (obs.running, obs.waiting, obs.qps)):
        return "queue metrics are not finite numbers"
    if obs.sampled_at is None:
        return "queue metrics have no sample time"
    age = (now - obs.sampled_at).total_seconds()
    if age > stale_after_seconds:
        return f"queue metrics are {age:.0f}s old (limit {stale_after_seconds:.0f}s)"
    return None


def metrics_problem(ctx: VariantContext) -> str | None:
    """Why the metric signals cannot trust the observation now (worked out once per plan)."""
    return ctx.problem


def slo_active(ctx: VariantContext) -> bool:
    return ctx.variant.slo.enabled and ctx.slo is not None


def uses_metrics(ctx: VariantContext) -> bool:
    """Whether a signal of the variant reads the live metrics (queue, slo, forecast)."""
    return ctx.variant.queue is not None or slo_active(ctx) or ctx.variant.forecast is not None


def hold_signal(ctx: VariantContext) -> SignalResult | None:
    """Never scale down blind: when the metric signals cannot read the metrics, keep what
    was planned (the previous plan, else the ready count)."""
    if not uses_metrics(ctx):
        return None
    problem = metrics_problem(ctx)
    if problem is None:
        return None
    # Keep what was planned: replicas still loading their model are not ready yet, and
    # must not be dropped because metrics are missing.
    if ctx.previous is not None:
        held = ctx.previous.desired_replicas
    elif ctx.observation is not None and ctx.observation.ready_replicas is not None:
        held = ctx.observation.ready_replicas
    else:
        return None
    return SignalResult("hold", held, f"{problem}; holding {held} replicas")


def demand_rate(obs: VariantObservation, now: datetime) -> tuple[float, bool] | None:
    """The request rate the slo signal sizes for, and whether it is the five-minute mean
    (from the recent history, when the observation has it) rather than the last minute's:
    a bursty minute is absorbed by the headroom, not provisioned for ten minutes by the
    scale-down window."""
    recent = smoothed(obs.demand_history, now)
    if recent is not None and math.isfinite(recent):
        return recent, True
    qps = _finite(obs.qps)
    return None if qps is None else (qps, False)


def minute_load(obs: VariantObservation | None) -> float | None:
    """The demand of the last minute, served and waiting, as the capacity learns it: the
    p99 of a minute belongs to that minute's load (a five-minute mean would still be low
    while a sudden step has the queue and the latency climbing)."""
    qps = _finite(obs.qps) if obs is not None else None
    if qps is None:
        return None
    return qps + (obs.waiting or 0.0) / DRAIN_SECONDS


def slo_signal(ctx: VariantContext) -> SignalResult | None:
    """Replicas for the demand at what one replica carries within the SLOs; more at once
    while the p99 misses, and no fewer than ready unless it is inside the headroom."""
    if not slo_active(ctx) or metrics_problem(ctx) is not None:
        return None
    obs = ctx.observation
    assert obs is not None and ctx.slo is not None
    rate = demand_rate(obs, ctx.now)
    if rate is None:
        return None
    qps, smoothed = rate
    waiting = obs.waiting or 0.0
    demand = qps + waiting / DRAIN_SECONDS
    capacity = ctx.capacity
    per_replica = capacity.per_replica if capacity else None
    replicas = None
    why = ""
    if per_replica:
        replicas = replicas_for(demand / per_replica)
        backlog = f" + {waiting:g} waiting over {DRAIN_SECONDS} s" if waiting else ""
        served = "served, 5-minute mean" if smoothed else "served"
        why = (
            f"{demand:.3g} req/s ({qps:.3g} {served}{backlog}) / {per_replica:.3g} per "
            f"replica ({capacity.basis}) = {replicas}"
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
        # A minute's p99 over a few hundred requests is noisy: a miss adds replicas at once
        # only when this load has missed on average (its band, this minute included; a
        # load not seen before has only this minute). A burst at a load that is usually
        # inside is over before a replica loads; the band learns from it instead.
        band = band_at(points, minute_load(obs) / ready) if points else None
        usual = band.ratio if band is not None and band.samples > 1 else reading.ratio
        if reading.ratio > 1 and not floor and usual > 1:
            reaction = replicas_for(ready * min(usual, MAX_REACTION))
            if replicas is None or reaction > replicas:
                replicas = reaction
                seen = (
                    ""
                    if usual == reading.ratio
                    else (f", {usual:.2f} of it on average at this load ({band.samples} cycles)")
                )
                why = (
                    f"{reading.detail} misses{seen}: {ready} ready x "
                    f"{min(usual, MAX_REACTION):.2f} = {reaction}"
                )
        elif reading.ratio > headroom and (replicas is None or replicas < ready):
            # Shrink only while well inside: a replica given up at the edge of the SLO is
            # soon needed again, and loading it takes startupSeconds.
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
    replicas = replicas_for(expected.rate / capacity.per_replica)
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
    replicas = replicas_for(load / queue.target_per_replica)
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
