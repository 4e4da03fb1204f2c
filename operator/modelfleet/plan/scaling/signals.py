"""The scaling signals. Each has the same shape, like a KEDA scaler:
`(context) -> SignalResult | None`, where None means "no opinion".
They are combined in one place: `planner.combine_signals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from modelfleet.api.cron import last_firing_at_or_before, parse_cron
from modelfleet.api.modelpool import MAX_REPLICAS, Schedule, Variant
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.scaling.types import PreviousVariant, SignalResult

SCHEDULE_LOOKBACK_DAYS = 8


@dataclass(frozen=True)
class VariantContext:
    variant: Variant
    timezone: ZoneInfo
    now: datetime
    observation: VariantObservation | None
    active_reservations: Sequence[Reservation]
    stale_after_seconds: float
    previous: PreviousVariant | None


Signal = Callable[[VariantContext], SignalResult | None]


def schedule_is_active(schedule: Schedule, tz: ZoneInfo, now: datetime) -> bool:
    """Active iff the latest `start` firing <= now is later than the latest `end` firing."""
    # Cron fires on whole minutes: within one minute the answer cannot change, so it is
    # worked out once per (window, zone, minute) however many pools share the schedule.
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return _window_open(schedule.start, schedule.end, tz, minute)


@lru_cache(maxsize=8192)
def _window_open(start: str, end: str, tz: ZoneInfo, minute: datetime) -> bool:
    last_start = last_firing_at_or_before(parse_cron(start), tz, minute, SCHEDULE_LOOKBACK_DAYS)
    if last_start is None:
        return False
    last_end = last_firing_at_or_before(parse_cron(end), tz, minute, SCHEDULE_LOOKBACK_DAYS)
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


def metrics_problem(ctx: VariantContext) -> str | None:
    """Why the queue signal cannot trust the observation now, or None if it can."""
    obs = ctx.observation
    if obs is not None and obs.problem:
        return obs.problem
    if obs is None or (obs.running is None and obs.waiting is None):
        return "no queue metrics"
    if obs.sampled_at is None:
        return "queue metrics have no sample time"
    age = (ctx.now - obs.sampled_at).total_seconds()
    if age > ctx.stale_after_seconds:
        return f"queue metrics are {age:.0f}s old (limit {ctx.stale_after_seconds:.0f}s)"
    return None


def queue_signal(ctx: VariantContext) -> SignalResult | None:
    queue = ctx.variant.queue
    if queue is None:
        return None
    problem = metrics_problem(ctx)
    if problem is not None:
        # Never scale down blind: keep what was planned (replicas still loading their model
        # are not ready yet, and must not be dropped because metrics are missing).
        if ctx.previous is not None:
            held = ctx.previous.desired_replicas
        elif ctx.observation is not None and ctx.observation.ready_replicas is not None:
            held = ctx.observation.ready_replicas
        else:
            return None
        return SignalResult("hold", held, f"{problem}; holding {held} replicas")
    obs = ctx.observation
    assert obs is not None
    load = (obs.running or 0.0) + (obs.waiting or 0.0)
    # Above any replica range: say so instead of computing an absurd count.
    wanted = load / queue.target_per_replica
    replicas = MAX_REPLICAS if wanted > MAX_REPLICAS else math.ceil(wanted - 1e-9)
    return SignalResult(
        "queue",
        replicas,
        f"queue: ({obs.running or 0:g} running + {obs.waiting or 0:g} waiting) / "
        f"{queue.target_per_replica:g} per replica = {replicas}",
    )


# Earlier wins a tie: a reservation is a promise, a schedule an intent, the queue a guess.
SIGNALS: tuple[Signal, ...] = (reservation_signal, schedule_signal, queue_signal)
