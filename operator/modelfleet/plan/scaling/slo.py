"""Pure: the latency SLOs a variant is held to, how close it runs to them, and what one
replica carries within them, learned from what the replicas served.

The routes' `slo.ttftSeconds` / `slo.e2eSeconds` are end-to-end promises; vLLM reports
the same latencies as histograms, so the operator reads their p99 over the last minute
(the requests that finished in it). A variant is held to the strictest SLO of every route
that sends to it, and of every route whose requests a degrade rule sends to it.

The capacity is learned, not configured: each cycle with enough traffic adds how close to
its SLOs the variant ran (p99 / SLO, the worse of TTFT and end-to-end) to the band of load
per replica it ran at (bands 10% wide, an average per band, forgotten after a day). The
capacity is the highest band that, like every band below it, stayed within the headroom
(e.g. p99 <= 0.8 x SLO). While that top band is well inside the headroom and nothing above
it is known, the capacity is one band higher (exploring), so an over-provisioned variant
learns that it may shrink; a band that broke the headroom stops it. Latency that exceeds
the headroom even at the lowest load seen, and does not fall with load, is a floor (long
prompts or outputs): more replicas would not help, and the capacity stays at that load.
Until anything is learned, the variant's `requestsPerSecondPerReplica` stands in.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from modelfleet.api.modelpool import Variant
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.histogram import VLLM_LATENCY_BOUNDS, VLLM_TTFT_BOUNDS, bucket_holding
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.scaling.types import Capacity, CapacityPoint, SloTarget

BAND = 1.1  # width of a load band: loads within 10% count as one
BAND_SAMPLES = 20  # a band averages its last this many cycles
CAPACITY_STEP = 0.2  # the capacity moves this share of the way to what the bands say
BAND_MEMORY = timedelta(days=1)  # a band not run at for this long is forgotten
MAX_BANDS = 16
# Explore one band up only while the top band is this far inside the headroom.
EXPLORE_BELOW = 0.75
# A p99 over fewer requests than this is one or two slow requests, not the variant's
# latency: such minutes neither teach the capacity nor count as a miss.
MIN_REQUESTS = 100
# A band breaks when its p99/SLO is over the headroom and over the lightest band's times
# this: latency the variant has at any load is a floor, not a reason to add replicas.
FLOOR_MARGIN = 1.2
# A band this close to the lightest band's latency has not felt the load yet: explore on.
FLAT = 1.05
RATE_WINDOW_SECONDS = 60  # the observations' rates and p99s are over the last minute


def slo_targets(pool_namespace: str, pool_name: str, policies: Sequence[RoutingPolicy]):
    """Per variant of the pool, the strictest SLOs of the routes that send to it."""
    ttft: dict[str, float] = {}
    e2e: dict[str, float] = {}
    routes: dict[str, list[str]] = {}

    def hold(variant: str, route) -> None:
        slo = route.slo
        if slo is None or (slo.ttft_seconds is None and slo.e2e_seconds is None):
            return
        if slo.ttft_seconds is not None:
            ttft[variant] = min(ttft.get(variant, math.inf), slo.ttft_seconds)
        if slo.e2e_seconds is not None:
            e2e[variant] = min(e2e.get(variant, math.inf), slo.e2e_seconds)
        names = routes.setdefault(variant, [])
        if route.name not in names:
            names.append(route.name)

    for policy in policies:
        if policy.namespace != pool_namespace or policy.spec.pool != pool_name:
            continue
        for route in policy.spec.routes:
            senders = {b.variant for b in route.backends if b.weight > 0}
            for variant in senders:
                hold(variant, route)
            # A degrade rule sends some of these requests to its fallback: same promise.
            for rule in policy.spec.degrade:
                if rule.variant in senders:
                    hold(rule.fallback, route)
    return {
        variant: SloTarget(ttft.get(variant), e2e.get(variant), tuple(names))
        for variant, names in routes.items()
    }


class SloReading(NamedTuple):
    """How close to its SLOs a variant runs now: the worse p99 / SLO."""

    ratio: float
    detail: str  # e.g. "p99 e2e 41.2 s of 60 s"
    requests: float  # finished in the window


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def slo_reading(target: SloTarget, observation: VariantObservation | None) -> SloReading | None:
    """None when the p99s are unknown or rest on too few requests to mean anything."""
    if observation is None:
        return None
    qps = _finite(observation.qps)
    if qps is None or qps * RATE_WINDOW_SECONDS < MIN_REQUESTS:
        return None
    kinds = (
        ("TTFT", _finite(observation.p99_ttft_seconds), target.ttft_seconds),
        ("e2e", _finite(observation.p99_latency_seconds), target.e2e_seconds),
    )
    readings = [(p99 / slo, name, p99, slo) for name, p99, slo in kinds if p99 is not None and slo]
    if not readings:
        return None
    ratio, name, p99, slo = max(readings)
    detail = f"p99 {name} {p99:.3g} s of {slo:g} s"
    bucket = _bucket_holding_slo(name, slo)
    if bucket is not None and bucket[0] < p99 <= bucket[1]:
        # vLLM's buckets are wide (TTFT has none between 1 and 2.5 s): a p99 in the bucket
        # that holds the SLO says only that it lies somewhere in it. Said, so that nobody
        # reads 2.4 s of 2 s as a measured miss.
        detail += (
            f" (interpolated: the p99 and the SLO are both inside vLLM's {bucket[0]:g}-"
            f"{bucket[1]:g} s histogram bucket)"
        )
    return SloReading(ratio, detail, qps * RATE_WINDOW_SECONDS)


_VLLM_BOUNDS = {"TTFT": VLLM_TTFT_BOUNDS, "e2e": VLLM_LATENCY_BOUNDS}


@lru_cache(maxsize=256)
def _bucket_holding_slo(name: str, slo: float) -> tuple[float, float] | None:
    return bucket_holding(_VLLM_BOUNDS[name], slo)


_LOG_BAND = math.log(BAND)


# A variant's remembered points are band middles, the same few numbers every cycle (each
# was worked out with two logarithms per point per cycle).
@lru_cache(maxsize=4096)
def _band(rps: float) -> int:
    return math.floor(math.log(rps) / _LOG_BAND)


def _middle(band: int) -> float:
    return BAND ** (band + 0.5)


def remember_load(
    points: Sequence[CapacityPoint], rps: float, ratio: float, now: datetime
) -> tuple[CapacityPoint, ...]:
    """The bands with this cycle's load added; old bands forgotten."""
    band = _band(rps)
    horizon = now - BAND_MEMORY
    kept: dict[int, CapacityPoint] = {}
    for point in points:
        if point.at >= horizon:
            kept[_band(point.rps)] = point
    before = kept.pop(band, None)
    if before is None:
        current = CapacityPoint(_middle(band), ratio, now, 1)
    else:
        # A running mean of the band's last BAND_SAMPLES cycles.
        samples = min(before.samples + 1, BAND_SAMPLES)
        averaged = before.ratio + (ratio - before.ratio) / samples
        current = CapacityPoint(_middle(band), averaged, now, samples)
    # Past MAX_BANDS the lowest loads go first: what matters is near the capacity. (Bands
    # order as their loads do, and ints sort faster than points by a key.)
    bands = sorted(kept)[1 - MAX_BANDS :]
    kept[band] = current
    insort(bands, band)
    return tuple(kept[b] for b in bands)


def band_at(points: Sequence[CapacityPoint], rps: float) -> CapacityPoint | None:
    """The remembered band this load per replica falls in, if any."""
    if rps <= 0:
        return None
    band = _band(rps)
    return next((p for p in points if _band(p.rps) == band), None)


def latency_curve(points: Sequence[CapacityPoint]) -> list[float]:
    """The bands' p99/SLO made non-decreasing in load (least squares, weighted by how many
    cycles each band averages: pool-adjacent-violators), so one noisy band neither hides
    a limit nor invents one."""
    blocks: list[list[float]] = []  # [weighted sum, weight, bands]
    for point in points:
        blocks.append([point.ratio * point.samples, float(point.samples), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, weight, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += weight
            blocks[-1][2] += count
    curve: list[float] = []
    for total, weight, count in blocks:
        curve.extend([total / weight] * int(count))
    return curve


def capacity_from_points(
    points: Sequence[CapacityPoint], headroom: float, fallback: float | None
) -> Capacity:
    """The capacity the bands support (see the module doc), before smoothing."""
    if not points:
        return _fallback(fallback, (), "no load with enough requests seen yet")
    curve = latency_curve(points)
    # The latency the variant has at its lightest loads is not load; what load adds on top
    # of it is, so the limit is the headroom, or that floor plus a margin.
    floor_ratio = curve[0]
    limit = max(headroom, floor_ratio * FLOOR_MARGIN)
    top = max(i for i, ratio in enumerate(curve) if ratio <= limit) if curve[0] <= limit else 0
    best, fitted = points[top], curve[top]
    above = points[top + 1] if top + 1 < len(points) else None  # it broke the limit
    floor = ""
    if floor_ratio > headroom:
        floor = (
            f"; p99/SLO {floor_ratio:.2f} even at the lightest loads, over the {headroom:g} "
            f"headroom: load may add x{FLOOR_MARGIN:g} to that"
        )
    if fitted <= max(headroom * EXPLORE_BELOW, floor_ratio * FLAT):
        if above is None and fallback is not None and fallback > best.rps * BAND:
            return Capacity(
                fallback,
                "spec",
                f"requestsPerSecondPerReplica {fallback:g}: every load seen so far (up to "
                f"{best.rps:.3g} req/s per replica) stayed well inside{floor}",
                tuple(points),
            )
        # One band up, but never into a band that broke the limit.
        explore = min(best.rps * BAND, above.rps / BAND) if above else best.rps * BAND
        if explore > best.rps * 1.01:
            return Capacity(
                explore,
                "exploring",
                f"p99/SLO {fitted:.2f} up to {best.rps:.3g} req/s per replica, load has not "
                f"raised the latency yet: trying {explore:.3g}{floor}",
                tuple(points),
            )
    broke = f"; {above.rps:.3g} broke it ({curve[top + 1]:.2f})" if above else ""
    return Capacity(
        best.rps,
        "floor" if floor else "learned",
        f"p99/SLO {fitted:.2f} (limit {limit:.2f}) up to {best.rps:.3g} req/s per "
        f"replica{broke}{floor}",
        tuple(points),
    )


def _fallback(spec: float | None, points, why: str) -> Capacity:
    if spec is not None:
        return Capacity(spec, "spec", f"requestsPerSecondPerReplica {spec:g} ({why})", points)
    return Capacity(None, "none", f"{why}; no requestsPerSecondPerReplica to start from", points)


def learn_capacity(
    variant: Variant,
    reading: SloReading | None,
    observation: VariantObservation | None,
    previous: Capacity | None,
    now: datetime,
    rate: float | None = None,
) -> Capacity:
    """This cycle's capacity: the previous bands, with this cycle's load (`rate`: the last
    minute's requests served and waiting, per ready replica) added when it says
    something (fresh metrics, ready replicas, enough requests); the number the signals
    divide by moves a fifth of the way to what the bands say each cycle, so that it does
    not jump with every noisy minute."""
    points = previous.points if previous else ()
    ready = observation.ready_replicas if observation else None
    if reading is not None and ready and rate:
        points = remember_load(points, rate / ready, reading.ratio, now)
    elif points:
        points = tuple(p for p in points if p.at >= now - BAND_MEMORY)
    target = capacity_from_points(
        points, variant.slo.headroom, variant.requests_per_second_per_replica
    )
    learning = ("learned", "exploring", "floor")
    if (
        previous is None
        or previous.per_replica is None
        or previous.basis not in learning
        or target.basis not in learning
    ):
        return target  # the spec's number, or the first that was learned: as it is
    before = previous.per_replica
    smoothed = before + CAPACITY_STEP * (target.per_replica - before)
    return Capacity(smoothed, target.basis, target.detail, target.points)


def capacity_of(variant: Variant, capacity: Capacity | None) -> Capacity:
    """The capacity the forecast divides by: the learned one, else the spec's."""
    if capacity is not None and capacity.per_replica is not None:
        return capacity
    return _fallback(variant.requests_per_second_per_replica, (), "no SLO to learn from")
