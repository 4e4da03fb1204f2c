"""Pure: reservations, replica time and request counts over an interval -> cost lines.

- reserved: the tenant pays its held replica-hours; its requests are included.
- onDemand: the tenant pays per request; holding capacity is free for it.
- hybrid: held replica-hours as reserved, plus requests beyond
  `includedRequestsPerReplicaHour` x held replica-hours at the on-demand price.
- pool: what the fleet itself costs, from each variant's costPerReplicaHour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation


@dataclass(frozen=True)
class CostLine:
    tenant: str | None  # None for the pool's own cost
    variant: str
    mode: str  # "reserved" | "onDemand" | "hybrid" | "pool"
    item: str  # "replica-hours" | "requests" | "overage-requests"
    quantity: float
    unit_price: float
    currency: str

    @property
    def amount(self) -> float:
        return self.quantity * self.unit_price


def overlap_hours(reservation: Reservation, start: datetime, end: datetime) -> float:
    window = reservation.spec.window
    lo = max(start, window.start) if window and window.start else start
    hi = min(end, window.end) if window and window.end else end
    return max(0.0, (hi - lo).total_seconds() / 3600.0)


def _line(reservation: Reservation, item: str, quantity: float, price: float | None) -> CostLine:
    spec, billing = reservation.spec, reservation.spec.billing
    return CostLine(
        spec.tenant, spec.variant, billing.mode, item, quantity, price or 0.0, billing.currency
    )


def reservation_lines(
    reservations: Sequence[Reservation],
    start: datetime,
    end: datetime,
    requests: Mapping[tuple[str, str], float],
) -> list[CostLine]:
    """`requests` counts requests per (tenant, variant) in [start, end)."""
    lines = []
    for reservation in sorted(reservations, key=lambda r: r.name):
        spec, billing = reservation.spec, reservation.spec.billing
        held = spec.replicas * overlap_hours(reservation, start, end)
        calls = requests.get((spec.tenant, spec.variant), 0.0)
        if billing.mode in ("reserved", "hybrid"):
            lines.append(
                _line(reservation, "replica-hours", held, billing.reserved_price_per_replica_hour)
            )
        if billing.mode == "onDemand":
            lines.append(_line(reservation, "requests", calls, billing.on_demand_price_per_request))
        if billing.mode == "hybrid":
            overage = max(0.0, calls - billing.included_requests_per_replica_hour * held)
            lines.append(
                _line(reservation, "overage-requests", overage, billing.on_demand_price_per_request)
            )
    return lines


def pool_lines(pool: ModelPool, replica_hours: Mapping[str, float]) -> list[CostLine]:
    return [
        CostLine(
            None,
            v.name,
            "pool",
            "replica-hours",
            replica_hours.get(v.name, 0.0),
            v.cost_per_replica_hour,
            "USD",
        )
        for v in pool.spec.variants
    ]


def totals_by(lines: Sequence[CostLine], *keys: str) -> dict[tuple, float]:
    totals: dict[tuple, float] = {}
    for line in lines:
        key = tuple(getattr(line, k) for k in keys)
        totals[key] = totals.get(key, 0.0) + line.amount
    return totals


def requests_by_reservation(
    reservations: Sequence[Reservation], by_tenant: Mapping[str, float]
) -> dict[tuple[str, str], float]:
    """The gateway counts requests per tenant; a tenant with reservations on several
    variants has its requests split evenly over them (the gateway cannot tell which
    variant a tenant's request was held for)."""
    variants_of: dict[str, list[str]] = {}
    for reservation in reservations:
        variants_of.setdefault(reservation.spec.tenant, []).append(reservation.spec.variant)
    split = {}
    for tenant, variants in variants_of.items():
        for variant in variants:
            split[(tenant, variant)] = by_tenant.get(tenant, 0.0) / len(variants)
    return split
