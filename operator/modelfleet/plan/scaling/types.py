"""What the planner reads besides the spec (previous plan) and what it produces (ScalePlan).

The records made for every variant every refresh (its context, signals, capacity,
recommendations, plan) are NamedTuples, as immutable as frozen dataclasses and several times
cheaper to make: a frozen dataclass sets each field through object.__setattr__. With the
routing table's routes and the usage records, that took 5% off a steady refresh's
instructions (bench/operator_instructions.py). `_replace` stands for dataclasses.replace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from modelfleet.api.common import CONDITION_REASON
from modelfleet.observe.observation import VariantObservation


class Recommendation(NamedTuple):
    """A raw (pre-stabilization) replica count recommended at one instant."""

    at: datetime
    replicas: int


@dataclass(frozen=True, slots=True)
class SloTarget:
    """The strictest latency SLOs of the routes that send to a variant."""

    ttft_seconds: float | None
    e2e_seconds: float | None
    routes: tuple[str, ...]  # the routes (and degrade rules' source routes) they come from

    def describe(self) -> str:
        return _describe_slos(self.ttft_seconds, self.e2e_seconds)


# Every variant with an SLO says it in its signal every refresh; a fleet has a few SLOs.
@lru_cache(maxsize=256)
def _describe_slos(ttft_seconds: float | None, e2e_seconds: float | None) -> str:
    parts = [f"TTFT {ttft_seconds:g} s"] if ttft_seconds else []
    parts += [f"e2e {e2e_seconds:g} s"] if e2e_seconds else []
    return " and ".join(parts)


class CapacityPoint(NamedTuple):
    """How close to the SLOs (p99 / SLO, the worse kind) the variant ran at one load."""

    rps: float  # requests/s per ready replica: the middle of a band 10% wide
    ratio: float  # averaged over the cycles that ran in this band
    at: datetime  # the last of them
    samples: int = 1  # how many cycles the average holds (at most slo.BAND_SAMPLES)


class Capacity(NamedTuple):
    """What one replica carries within the SLOs' headroom, and how that is known."""

    per_replica: float | None  # requests/s; None: not known yet
    basis: str  # learned | exploring | floor | spec | none
    detail: str
    points: tuple[CapacityPoint, ...] = ()


class PreviousVariant(NamedTuple):
    desired_replicas: int
    recommendations: tuple[Recommendation, ...] = ()
    last_scale_time: datetime | None = None
    capacity: Capacity | None = None


@dataclass(frozen=True, slots=True)
class PreviousPlan:
    at: datetime
    variants: Mapping[str, PreviousVariant]  # by variant name


class SignalResult(NamedTuple):
    """One scaler's vote for a variant: like a KEDA scaler's metric, with its reason."""

    reason: str  # the signal's name: reservation, schedule, slo, forecast, queue, hold
    replicas: int
    detail: str


class VariantPlan(NamedTuple):
    name: str
    desired_replicas: int
    reason: str
    message: str
    priority: int
    gpus_per_replica: int
    floor: int
    signals: tuple[SignalResult, ...]
    active_schedules: tuple[str, ...]
    recommendations: tuple[Recommendation, ...]
    last_scale_time: datetime | None
    observation: VariantObservation | None
    metrics_problem: str | None  # why the metric signals could not be used, if they could not
    capacity: Capacity | None = None  # the slo signal's learned capacity (kept in status)
    # Replicas the SLOs need now (the slo signal's count): the budget cuts other replicas first.
    slo_need: int | None = None

    @property
    def gpus(self) -> int:
        return self.desired_replicas * self.gpus_per_replica


# The status is built from these unvalidated: each must be a valid condition as it is made.
_REASON = re.compile(CONDITION_REASON)


@dataclass(frozen=True, slots=True)
class PlanCondition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in ("True", "False", "Unknown") or not _valid_reason(self.reason):
            raise ValueError(f"not a condition: status {self.status!r}, reason {self.reason!r}")


@lru_cache(maxsize=256)  # a few dozen reasons, checked for every condition every refresh
def _valid_reason(reason: str) -> bool:
    return _REASON.fullmatch(reason) is not None


@dataclass(frozen=True, slots=True)
class ReservationGrant:
    namespace: str
    name: str
    tenant: str
    variant: str
    replicas: int
    active: bool
    granted: bool
    granted_replicas: int
    message: str


@dataclass(frozen=True, slots=True)
class PoolPlan:
    namespace: str
    name: str
    at: datetime
    gpu_budget: int
    variants: tuple[VariantPlan, ...]
    conditions: tuple[PlanCondition, ...]
    reservations: tuple[ReservationGrant, ...] = field(default_factory=tuple)

    @property
    def gpus_planned(self) -> int:
        return sum(v.gpus for v in self.variants)

    @property
    def desired_replicas(self) -> int:
        return sum(v.desired_replicas for v in self.variants)

    def variant(self, name: str) -> VariantPlan | None:
        return next((v for v in self.variants if v.name == name), None)

    def condition(self, type_: str) -> PlanCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)
