"""One replay hour by hour and day by day, in the pool's time zone: GPU-hours, requests and
SLO attainment, and which hours are ramps (demand climbing fast), where a fleet that
scales late misses.

A request counts in the hour it arrived. Attainment is over the requests of routes with
that SLO, a dropped request counting as a miss (as in the whole-run numbers).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet_testbed.sim.outcome import SERVED, ReplayResult
from modelfleet_testbed.sim.workload import Workload

# An hour is a ramp when it brings at least this many times the previous hour's requests,
RAMP_GROWTH = 1.25
# and the climb is at least this share of the day's busiest hour (not a quiet night's blip).
RAMP_SHARE = 0.05


@dataclass
class Hour:
    start: datetime  # local
    begin: float  # seconds since the replay's start
    end: float
    arrivals: int = 0
    ttft_total: int = 0
    ttft_met: int = 0
    e2e_total: int = 0
    e2e_met: int = 0
    gpu_seconds: float = 0.0
    ramp: bool = False

    @property
    def ttft(self) -> float | None:
        return self.ttft_met / self.ttft_total if self.ttft_total else None

    @property
    def e2e(self) -> float | None:
        return self.e2e_met / self.e2e_total if self.e2e_total else None


def hours_of(start: datetime, duration: float, tz: ZoneInfo) -> list[Hour]:
    """The local clock hours the replay spans (the first and last may be partial)."""
    hours = []
    local = start.astimezone(tz)
    boundary = local.replace(minute=0, second=0, microsecond=0)
    begin = 0.0
    while begin < duration:
        following = (boundary.astimezone(ZoneInfo("UTC")) + timedelta(hours=1)).astimezone(tz)
        following = following.replace(minute=0, second=0, microsecond=0)
        end = min(duration, (following - start).total_seconds())
        hours.append(Hour(boundary, begin, end))
        boundary, begin = following, end
    return hours


def _count_requests(
    hours: Sequence[Hour], result: ReplayResult, workload: Workload, policy: RoutingPolicy
) -> None:
    times = workload.arrivals.times
    targets = [
        (r.slo.ttft_seconds, r.slo.e2e_seconds) if r.slo else (None, None)
        for r in policy.spec.routes
    ]
    status, route_of, ttft, e2e = result.status, result.route_of, result.ttft, result.e2e
    for hour in hours:
        first = bisect_left(times, hour.begin)
        last = bisect_left(times, hour.end)
        hour.arrivals = last - first
        # Counted in locals over slices: a week's hours hold a million requests.
        ttft_total = ttft_met = e2e_total = e2e_met = 0
        requests = zip(
            route_of[first:last], status[first:last], ttft[first:last], e2e[first:last], strict=True
        )
        for route, state, first_token, whole in requests:
            if route < 0:
                continue
            ttft_slo, e2e_slo = targets[route]
            served = state == SERVED
            if ttft_slo is not None:
                ttft_total += 1
                ttft_met += served and first_token <= ttft_slo
            if e2e_slo is not None:
                e2e_total += 1
                e2e_met += served and whole <= e2e_slo
        hour.ttft_total += ttft_total
        hour.ttft_met += ttft_met
        hour.e2e_total += e2e_total
        hour.e2e_met += e2e_met


def _count_gpus(hours: Sequence[Hour], result: ReplayResult, pool: ModelPool) -> None:
    gpus = [v.gpus_per_replica for v in pool.spec.variants]
    begins = [hour.begin for hour in hours]
    for replica in result.replicas:
        held_from = max(0.0, replica.created)
        held_to = (
            result.duration if replica.gone_at is None else min(replica.gone_at, result.duration)
        )
        if held_to <= held_from:
            continue
        index = max(0, bisect_left(begins, held_from) - 1)
        while index < len(hours) and hours[index].begin < held_to:
            hour = hours[index]
            overlap = min(held_to, hour.end) - max(held_from, hour.begin)
            if overlap > 0:
                hour.gpu_seconds += overlap * gpus[replica.fleet]
            index += 1


def _mark_ramps(hours: Sequence[Hour]) -> None:
    by_day: dict[Any, list[Hour]] = {}
    for hour in hours:
        by_day.setdefault(hour.start.date(), []).append(hour)
    for index in range(1, len(hours)):
        hour, before = hours[index], hours[index - 1]
        # Rates, so that a partial first or last hour compares fairly.
        now_rate = hour.arrivals / max(1.0, hour.end - hour.begin)
        then_rate = before.arrivals / max(1.0, before.end - before.begin)
        peak = max(h.arrivals / max(1.0, h.end - h.begin) for h in by_day[hour.start.date()])
        hour.ramp = (
            then_rate > 0
            and now_rate >= RAMP_GROWTH * then_rate
            and now_rate - then_rate >= RAMP_SHARE * peak
        )


def hourly(
    result: ReplayResult,
    workload: Workload,
    pool: ModelPool,
    policy: RoutingPolicy,
    start: datetime,
) -> list[Hour]:
    hours = hours_of(start, result.duration, ZoneInfo(pool.spec.timezone))
    _count_requests(hours, result, workload, policy)
    _count_gpus(hours, result, pool)
    _mark_ramps(hours)
    return hours


def _share(met: int, total: int) -> float | None:
    return met / total if total else None


def days_json(hours: Sequence[Hour]) -> list[dict[str, Any]]:
    """Per local date: GPU-hours, requests, SLO attainment, and the ramp hours."""
    days: dict[Any, list[Hour]] = {}
    for hour in hours:
        days.setdefault(hour.start.date(), []).append(hour)
    out = []
    for date, members in days.items():
        ttft = [sum(h.ttft_met for h in members), sum(h.ttft_total for h in members)]
        e2e = [sum(h.e2e_met for h in members), sum(h.e2e_total for h in members)]
        ramps = [h for h in members if h.ramp]
        out.append(
            {
                "date": date.isoformat(),
                "hours": sum(h.end - h.begin for h in members) / 3600,
                "requests": sum(h.arrivals for h in members),
                "gpuHours": sum(h.gpu_seconds for h in members) / 3600,
                "sloAttainment": {"ttft": _share(*ttft), "e2e": _share(*e2e)},
                "rampHours": [
                    {
                        "hour": h.start.strftime("%H:%M"),
                        "requests": h.arrivals,
                        "sloAttainment": {"ttft": h.ttft, "e2e": h.e2e},
                    }
                    for h in ramps
                ],
                "rampAttainment": {
                    "ttft": _share(
                        sum(h.ttft_met for h in ramps), sum(h.ttft_total for h in ramps)
                    ),
                    "e2e": _share(sum(h.e2e_met for h in ramps), sum(h.e2e_total for h in ramps)),
                },
            }
        )
    return out
