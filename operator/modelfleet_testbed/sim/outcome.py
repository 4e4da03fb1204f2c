"""What a replay is asked to do and what it gives back: settings, request outcomes,
the planner's cycles and scale events, every replica."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelfleet_testbed.sim.replica_set import SimReplica

PENDING, SERVED, NO_ROUTE, NO_READY, TOO_LONG, TERMINATED = range(6)
DROP_REASONS = {
    NO_ROUTE: "no-route",
    NO_READY: "no-ready-replica",
    TOO_LONG: "too-long",
    TERMINATED: "terminated",
}
BALANCES = ("random", "gateway-queue")


@dataclass(frozen=True)
class ReplaySettings:
    start: datetime
    duration: float  # seconds of arrivals, planning and accounting
    scrape_lag: float = 15.0
    termination_grace: float = 30.0
    rate_window: int = 60  # seconds, as the operator's rate(...[1m]) queries
    balance: str = "random"
    seed: int = 0
    log_plans: bool = False  # keep each cycle's observations and `plan -o json` document
    keep_replica_of_request: bool = False


@dataclass(frozen=True)
class ScaleEvent:
    t: float
    variant: str
    before: int
    after: int
    reason: str
    message: str
    ready_at: float | None  # for a scale-up: when the new replicas become ready


@dataclass(frozen=True)
class CyclePoint:
    t: float
    desired: tuple[int, ...]  # per variant, in the pool's order
    allocated: tuple[int, ...]  # starting + ready (not draining)
    ready: tuple[int, ...]
    waiting: tuple[float | None, ...]  # as scraped at t - scrape_lag (None: no sample)
    running: tuple[float | None, ...]
    reasons: tuple[str, ...]


@dataclass
class ReplayResult:
    variants: tuple[str, ...]
    duration: float
    status: bytearray
    ttft: array
    e2e: array
    queued: array
    variant_of: array  # 'b': index into variants, -1 when no variant was chosen
    route_of: array  # 'h': index into the policy's routes, -1 for no route
    degraded: bytearray  # 1 when a degrade companion route sent it to the fallback
    replica_of: array | None
    replicas: list[SimReplica] = field(default_factory=list)  # every replica, in creation order
    series: list[CyclePoint] = field(default_factory=list)
    scale_events: list[ScaleEvent] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
