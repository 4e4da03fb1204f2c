"""Pure: latency-aware weights within a route that declares an SLO.

A backend whose p99 misses the route's SLO (the worse of TTFT and end-to-end, over the last
minute, on enough requests to mean something) gives up to SHIFT_STEP points of its weight
per cycle to the route's backends with headroom (p99 within their variant's `slo.headroom`
of the SLO), in proportion to their configured weights. Once it is back inside the
headroom (or carries too little traffic to tell), the points flow back at the same pace,
until the route has its configured weights again. The shift is remembered in the
RoutingPolicy's status (its effective weights), so it moves by bounded steps, not jumps,
and a restarted operator continues from it. Missing nowhere moves nothing. Missing
everywhere moves weight only from the backend furthest over the SLO to those far closer to
it (at most CLOSER of its excess p99 / SLO over 1): long prompts a small model cannot
answer in time however idle it is miss the route's TTFT on every backend, but on one far
more often than on the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from modelfleet.api.routingpolicy import RouteSlo
from modelfleet.plan.scaling.slo import SloReading
from modelfleet.plan.scaling.types import SloTarget

SHIFT_STEP = 10  # points of 100 moved per cycle, at most
# When every backend misses: a backend this share as far over the SLO (or less) as the worst
# serves the route's requests clearly better, and takes weight from it.
CLOSER = 1 / 3


@dataclass(frozen=True)
class Shift:
    weights: list[int]  # per live backend, summing to the same total
    note: str  # why they differ from the configured shares ("" when they do not)


def route_target(route_name: str, slo: RouteSlo | None) -> SloTarget | None:
    if slo is None or (slo.ttft_seconds is None and slo.e2e_seconds is None):
        return None
    return SloTarget(slo.ttft_seconds, slo.e2e_seconds, (route_name,))


def _move(weights: list[int], donors: Sequence[int], takers: Sequence[int], base, points):
    """Move up to `points` from donors (largest first) to takers (by base weight)."""
    moved = 0
    for index in sorted(donors, key=lambda i: -weights[i]):
        take = min(points - moved, weights[index])
        weights[index] -= take
        moved += take
    if not moved:
        return 0
    share_of = [base[i] or 1 for i in takers]
    total = sum(share_of)
    given = [moved * s // total for s in share_of]
    for k in range(moved - sum(given)):
        given[k % len(given)] += 1
    for index, amount in zip(takers, given, strict=True):
        weights[index] += amount
    return moved


def shift_weights(
    variants: Sequence[str],
    base: Sequence[int],
    previous: Mapping[str, int] | None,
    reading: Callable[[str], SloReading | None],
    headroom: Callable[[str], float],
) -> Shift:
    """This cycle's weights for a route's live backends (`base`: the configured shares)."""
    weights = list(base)
    # The last cycle's weights carry on while the same backends are live (one shifted to 0
    # is left out of the table, so it reads as 0).
    if previous is not None and set(previous) <= set(variants):
        carried = [previous.get(v, 0) for v in variants]
        if sum(carried) == sum(base):
            weights = carried
    readings = [reading(v) for v in variants]
    missing = [i for i, r in enumerate(readings) if r is not None and r.ratio > 1]
    roomy = [
        i
        for i, r in enumerate(readings)
        if r is not None and r.ratio <= headroom(variants[i]) and i not in missing
    ]
    notes = []
    if missing and not roomy:
        worst = max(missing, key=lambda i: readings[i].ratio)
        excess = readings[worst].ratio - 1
        closer = [i for i in missing if readings[i].ratio - 1 <= CLOSER * excess]
        if closer:
            moved = _move(weights, [worst], closer, base, SHIFT_STEP)
            if moved:
                notes.append(
                    f"{moved} points moved from {variants[worst]} ({readings[worst].detail}) "
                    f"to {', '.join(f'{variants[i]} ({readings[i].detail})' for i in closer)}: "
                    "every backend misses, these far less"
                )
    if missing and roomy:
        moved = _move(weights, missing, roomy, base, SHIFT_STEP)
        if moved:
            misses = ", ".join(f"{variants[i]} ({readings[i].detail})" for i in missing)
            notes.append(
                f"{moved} points moved from {misses} to " + ", ".join(variants[i] for i in roomy)
            )
    elif not missing:
        # Back toward the configured shares: from those above them to those below them that
        # are inside their headroom again (or too idle to tell).
        below = [
            i
            for i, r in enumerate(readings)
            if weights[i] < base[i] and (r is None or r.ratio <= headroom(variants[i]))
        ]
        above = [i for i in range(len(variants)) if weights[i] > base[i]]
        if below and above:
            room = min(SHIFT_STEP, sum(base[i] - weights[i] for i in below))
            surplus = sum(weights[i] - base[i] for i in above)
            points = min(room, surplus)
            for index in sorted(above, key=lambda i: -(weights[i] - base[i])):
                take = min(points, weights[index] - base[index])
                weights[index] -= take
                points -= take
            returned = min(room, surplus)
            for index in below:
                give = min(returned, base[index] - weights[index])
                weights[index] += give
                returned -= give
            notes.append(
                "returning toward the configured weights: "
                + ", ".join(variants[i] for i in below)
                + " back inside the SLO headroom"
            )
    if weights != list(base) and not notes:
        held = ", ".join(f"{variants[i]} {weights[i]}" for i in range(len(variants)))
        notes.append(f"latency shift held ({held}): no backend with headroom to take or give")
    return Shift(weights, "; ".join(notes))
