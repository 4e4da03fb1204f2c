"""Pure: reservations, replica time and what the tenants used over an interval -> cost lines.

Everyone is billed for what they use, per answered request and per thousand prompt and
completion tokens (the gateway counts both from each answer's `usage`):

- a tenant's use of a variant it holds no Reservation on is billed on demand at the
  variant's `onDemandPrice` (mode `onDemand`, the pool's currency);
- on a variant it holds a Reservation on, the Reservation's billing applies:
  - reserved: the tenant pays its held replica-hours; its use is included;
  - onDemand: the Reservation's own prices per request (and per thousand tokens);
  - hybrid: held replica-hours as reserved, plus the requests beyond
    `includedRequestsPerReplicaHour` x held replica-hours at the Reservation's on-demand
    price, with their share of the tokens at its token prices.
- pool: what the fleet itself costs, from each variant's costPerReplicaHour.

Usage lines carry the API key; replica-hour lines do not. A tenant with several
Reservations on one variant has its use of it split evenly over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from modelfleet.api.modelpool import ModelPool, OnDemandPrice
from modelfleet.api.reservation import Reservation
from modelfleet.observe.usage import Usage, UsageKey, UsageTable

# What "cheaper" compares: the on-demand price of a request of this many prompt and
# completion tokens.
REFERENCE_TOKENS = 1000


# A tuple, not a frozen dataclass: every refresh prices each key's use of each variant, tens
# of thousands of lines at 1,000 pools, and a frozen dataclass takes three times as long to
# make.
class CostLine(NamedTuple):
    tenant: str | None  # None for the pool's own cost
    variant: str
    mode: str  # "reserved" | "onDemand" | "hybrid" | "pool"
    item: str  # "replica-hours" | "requests" | "prompt-tokens" | "completion-tokens" | "overage-*"
    quantity: float
    unit_price: float
    currency: str
    key_id: str | None = None  # the API key, on lines of what a key used

    @property
    def amount(self) -> float:
        return self.quantity * self.unit_price


def overlap_hours(reservation: Reservation, start: datetime, end: datetime) -> float:
    window = reservation.spec.window
    lo = max(start, window.start) if window and window.start else start
    hi = min(end, window.end) if window and window.end else end
    return max(0.0, (hi - lo).total_seconds() / 3600.0)


def pool_lines(pool: ModelPool, replica_hours: Mapping[str, float]) -> list[CostLine]:
    return [
        CostLine(
            None,
            v.name,
            "pool",
            "replica-hours",
            replica_hours.get(v.name, 0.0),
            v.cost_per_replica_hour,
            pool.spec.currency,
        )
        for v in pool.spec.variants
    ]


def reservation_hours_lines(
    reservations: Sequence[Reservation], start: datetime, end: datetime
) -> list[CostLine]:
    """The held replica-hours of reserved and hybrid Reservations in [start, end)."""
    lines = []
    for reservation in sorted(reservations, key=lambda r: r.name):
        spec, billing = reservation.spec, reservation.spec.billing
        if billing.mode in ("reserved", "hybrid"):
            held = spec.replicas * overlap_hours(reservation, start, end)
            lines.append(
                CostLine(
                    spec.tenant,
                    spec.variant,
                    billing.mode,
                    "replica-hours",
                    held,
                    billing.reserved_price_per_replica_hour or 0.0,
                    billing.currency,
                )
            )
    return lines


def _charges(
    key: UsageKey,
    used: Usage,
    mode: str,
    prefix: str,
    prices: OnDemandPrice,
    currency: str,
) -> list[CostLine]:
    """One line per priced item of what `key` used (an unpriced item costs nothing)."""
    items = (
        ("requests", used.requests, prices.per_request),
        ("prompt-tokens", used.prompt_tokens, prices.per_thousand_prompt_tokens / 1000),
        ("completion-tokens", used.completion_tokens, prices.per_thousand_completion_tokens / 1000),
    )
    return [
        CostLine(
            key.tenant, key.variant, mode, prefix + item, quantity, price, currency, key.key_id
        )
        for item, quantity, price in items
        if quantity > 0 and price > 0
    ]


def reservation_prices(reservation: Reservation) -> OnDemandPrice:
    billing = reservation.spec.billing
    return OnDemandPrice(
        per_request=billing.on_demand_price_per_request or 0.0,
        per_thousand_prompt_tokens=billing.on_demand_price_per_thousand_prompt_tokens or 0.0,
        per_thousand_completion_tokens=(
            billing.on_demand_price_per_thousand_completion_tokens or 0.0
        ),
    )


def _reserved_use(
    reservation: Reservation,
    start: datetime,
    end: datetime,
    used: Mapping[UsageKey, Usage],
) -> list[CostLine]:
    """What the keys in `used` owe under `reservation` (already its share of their use)."""
    billing = reservation.spec.billing
    if billing.mode == "reserved":
        return []
    share = 1.0
    prefix = ""
    if billing.mode == "hybrid":
        held = reservation.spec.replicas * overlap_hours(reservation, start, end)
        calls = sum(u.requests for u in used.values())
        included = billing.included_requests_per_replica_hour * held
        share = max(0.0, calls - included) / calls if calls > 0 else 0.0
        prefix = "overage-"
    prices = reservation_prices(reservation)
    lines = []
    for key, entry in sorted(used.items()):
        lines += _charges(key, entry.scaled(share), billing.mode, prefix, prices, billing.currency)
    return lines


def usage_lines(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    start: datetime,
    end: datetime,
    usage: UsageTable,
) -> list[CostLine]:
    """What the tenants owe for what they used in [start, end): on a variant they hold a
    Reservation on, by its billing; elsewhere on demand at the pool's prices."""
    held: dict[tuple[str, str], list[Reservation]] = {}
    for reservation in sorted(reservations, key=lambda r: r.name):
        held.setdefault((reservation.spec.tenant, reservation.spec.variant), []).append(reservation)
    lines: list[CostLine] = []
    for (tenant, variant), theirs in held.items():
        used = {
            key: entry.scaled(1 / len(theirs))
            for key, entry in usage.items()
            if (key.tenant, key.variant) == (tenant, variant)
        }
        for reservation in theirs:
            lines += _reserved_use(reservation, start, end, used)
    for key, entry in sorted(usage.items()):
        if (key.tenant, key.variant) in held:
            continue
        variant = pool.spec.variant(key.variant)
        if variant is None or variant.on_demand_price is None:
            continue  # a variant the pool no longer has, or one that is free
        lines += _charges(key, entry, "onDemand", "", variant.on_demand_price, pool.spec.currency)
    return lines


def ledger_lines(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    replica_hours: Mapping[str, float],
    start: datetime,
    end: datetime,
    usage: UsageTable,
) -> list[CostLine]:
    """Everything [start, end) cost: the pool's replicas, the Reservations' held hours and
    what the tenants used."""
    return (
        pool_lines(pool, replica_hours)
        + reservation_hours_lines(reservations, start, end)
        + usage_lines(pool, reservations, start, end, usage)
    )


def totals_by(lines: Sequence[CostLine], *keys: str) -> dict[tuple, float]:
    totals: dict[tuple, float] = {}
    for line in lines:
        key = tuple(getattr(line, k) for k in keys)
        totals[key] = totals.get(key, 0.0) + line.amount
    return totals


def reference_price(pool: ModelPool, variant: str) -> tuple[float, float]:
    """How dear a variant is, for "cheaper backends": the on-demand price of a request of
    REFERENCE_TOKENS prompt and completion tokens, then costPerReplicaHour."""
    spec = pool.spec.variant(variant)
    assert spec is not None, "check_references guarantees every backend names a variant"
    price = spec.on_demand_price or OnDemandPrice()
    return (price.charge(1, REFERENCE_TOKENS, REFERENCE_TOKENS), spec.cost_per_replica_hour)
