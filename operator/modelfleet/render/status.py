"""Pure: plans -> the `status` of each custom resource (the pydantic status models, which
are also the shape of `modelfleet plan -o json`); and a pool's status back to the
previous plan.

The pool's status is the operator's memory: a restarted operator reads the previous plan
(desired counts, recommendation history, last scale times) from it, so a restart alone
changes no replica count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

from modelfleet.api.common import Condition
from modelfleet.api.load import InputError
from modelfleet.api.modelpool import (
    CapacityStatus,
    ModelPoolStatus,
)
from modelfleet.api.reservation import ReservationStatus
from modelfleet.api.routingpolicy import (
    EffectiveRoute,
    RouteMatch,
    RoutingPolicyStatus,
)
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.budgets import BudgetPlan
from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable, TableRoute
from modelfleet.plan.scaling.types import (
    Capacity,
    CapacityPoint,
    PlanCondition,
    PoolPlan,
    PreviousPlan,
    PreviousVariant,
    Recommendation,
    ReservationGrant,
    VariantPlan,
)

# Status messages are read by people and stored in etcd: long lists are cut.
MESSAGE_LIMIT = 4000


def merge_conditions(
    previous: Sequence[Condition] | None,
    current: Iterable[PlanCondition],
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """metav1.Conditions: lastTransitionTime moves only when a condition's status changes."""
    before = {c.type: c for c in previous or []}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        changed = old is None or old.status != condition.status
        if not changed and _same(old, condition, generation):
            merged.append(old)
            continue
        merged.append(
            # Built, not validated: every field is the planner's own (a PlanCondition's
            # reason is a CamelCase constant; the goldens check each against the CRD).
            Condition.model_construct(
                type=condition.type,
                status=condition.status,
                reason=condition.reason,
                message=condition.message[:MESSAGE_LIMIT],
                last_transition_time=now if changed else old.last_transition_time,
                observed_generation=generation,
            )
        )
    return merged


# What merge_conditions sets of every condition it builds.
_BUILT_FIELDS = frozenset(
    ("type", "status", "reason", "message", "last_transition_time", "observed_generation")
)


def _same(old: Condition, condition: PlanCondition, generation: int | None) -> bool:
    """Whether `old` is what merge_conditions would build for `condition` again (its time
    kept): then it is used as it is (most conditions stay the same from cycle to cycle).
    Only one with every field set: one read back without some would be written with
    them."""
    return (
        old.reason == condition.reason
        and old.message == condition.message[:MESSAGE_LIMIT]
        and old.observed_generation == generation
        and old.model_fields_set == _BUILT_FIELDS
    )


def replace_conditions(
    previous: Sequence[Condition] | None,
    current: Iterable[PlanCondition],
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """`current` merged in; the other previous conditions kept as they were."""
    current = list(current)
    replaced = {c.type for c in current}
    kept = [c for c in previous or [] if c.type not in replaced]
    return [*kept, *merge_conditions(previous, current, now, generation)]


def ready_condition(plan: PoolPlan) -> PlanCondition:
    behind = [
        f"{v.name} {_ready(v)}/{v.desired_replicas}"
        for v in plan.variants
        if _ready(v) < v.desired_replicas
    ]
    if behind:
        return PlanCondition(
            "Ready", "False", "ReplicasNotReady", "not ready: " + ", ".join(behind)
        )
    return PlanCondition("Ready", "True", "AllReplicasReady", "every variant has its replicas")


def _ready(plan: VariantPlan) -> int:
    return (plan.observation.ready_replicas or 0) if plan.observation else 0


# A pool's status is built as the wire form the API server gets, not as a model: at 1,000
# pools, validating each status and dumping it again was a fifth of a refresh. The wire form
# is what the model would dump (`by_alias=True, mode="json"`), field for field and in the
# models' order; a test holds the two together. The other statuses are models.


def json_time(value: datetime | None) -> str | None:
    """A time as the status models dump it: ISO 8601 with its offset, `Z` for UTC."""
    return None if value is None else _json_time(value, value.tzinfo)


# Every pool plans at the same `now`, and a recommendation's time stays in the status for
# the stabilization window: a few hundred distinct times a refresh, written tens of
# thousands of times. (Keyed by the zone too: equal instants in two zones are written
# differently.)
@lru_cache(maxsize=1024)
def _json_time(value: datetime, zone: Any) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _json_float(value: float | None) -> float | None:
    # A float field dumps an int it was given as a float (3 -> 3.0).
    return None if value is None else float(value)


def observed_wire(obs: VariantObservation | None) -> dict[str, Any] | None:
    if obs is None:
        return None
    return {
        "readyReplicas": obs.ready_replicas,
        "running": _json_float(obs.running),
        "waiting": _json_float(obs.waiting),
        "qps": _json_float(obs.qps),
        "p99LatencySeconds": _json_float(obs.p99_latency_seconds),
        "errorRate": _json_float(obs.error_rate),
        "p99TtftSeconds": _json_float(obs.p99_ttft_seconds),
        "p99QueueSeconds": _json_float(obs.p99_queue_seconds),
        "sampledAt": json_time(obs.sampled_at.astimezone(UTC)) if obs.sampled_at else None,
    }


def capacity_wire(capacity: Capacity | None) -> dict[str, Any] | None:
    if capacity is None:
        return None
    return {
        "requestsPerSecondPerReplica": _json_float(capacity.per_replica),
        "basis": capacity.basis,
        "detail": capacity.detail,
        "points": [
            {
                "requestsPerSecond": float(p.rps),
                "sloRatio": float(p.ratio),
                "at": json_time(p.at),
                "samples": p.samples,
            }
            for p in capacity.points
        ],
    }


def capacity_from_status(status: CapacityStatus | None) -> Capacity | None:
    if status is None:
        return None
    return Capacity(
        status.requests_per_second_per_replica,
        status.basis,
        status.detail,
        tuple(
            CapacityPoint(p.requests_per_second, p.slo_ratio, p.at, p.samples)
            for p in status.points
        ),
    )


def variant_wire(plan: VariantPlan) -> dict[str, Any]:
    """One variant's entry of the pool status."""
    return {
        "name": plan.name,
        "desiredReplicas": plan.desired_replicas,
        "readyReplicas": plan.observation.ready_replicas if plan.observation else None,
        "reason": plan.reason,
        "message": plan.message,
        "floor": plan.floor,
        "priority": plan.priority,
        "gpusPerReplica": plan.gpus_per_replica,
        "gpus": plan.gpus,
        "activeSchedules": list(plan.active_schedules),
        "signals": [
            {"reason": s.reason, "replicas": s.replicas, "detail": s.detail} for s in plan.signals
        ],
        "observed": observed_wire(plan.observation),
        "lastScaleTime": json_time(plan.last_scale_time),
        "recommendations": [
            {"at": json_time(r.at), "replicas": r.replicas} for r in plan.recommendations
        ],
        "capacity": capacity_wire(plan.capacity),
    }


def grant_wire(grant: ReservationGrant) -> dict[str, Any]:
    return {
        "namespace": grant.namespace,
        "name": grant.name,
        "tenant": grant.tenant,
        "variant": grant.variant,
        "replicas": grant.replicas,
        "active": grant.active,
        "granted": grant.granted,
        "grantedReplicas": grant.granted_replicas,
        "message": grant.message,
    }


def condition_wire(condition: Condition) -> dict[str, Any]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": json_time(condition.last_transition_time),
        "observedGeneration": condition.observed_generation,
    }


@dataclass(frozen=True, eq=False)
class BuiltPoolStatus:
    """A pool's status as the operator builds it: the wire form it writes, the conditions
    in it, and the plan it records, which the next cycle plans from once the status is read
    back unchanged (neither it nor the plan is parsed again). The model is made from the
    wire form when something asks for it (`modelfleet plan`, the simulator)."""

    wire: dict[str, Any]
    conditions: tuple[Condition, ...]
    previous: PreviousPlan

    @cached_property
    def model(self) -> ModelPoolStatus:
        return ModelPoolStatus.model_validate(self.wire)

    @property
    def planned_at(self) -> datetime:
        return self.previous.at


RECONCILED = PlanCondition("Reconciled", "True", "Applied", "the plan is applied")


def pool_status(
    plan: PoolPlan,
    generation: int | None,
    previous_conditions: Sequence[Condition] | None,
    metrics_error: str | None = None,
) -> BuiltPoolStatus:
    current = [ready_condition(plan), RECONCILED]
    for condition in plan.conditions:
        if condition.type == "MetricsAvailable" and metrics_error:
            condition = PlanCondition(
                "MetricsAvailable", "False", "PrometheusUnavailable", metrics_error
            )
        current.append(condition)
    conditions = merge_conditions(previous_conditions, current, plan.at, generation)
    wire = {
        "observedGeneration": generation,
        "plannedAt": json_time(plan.at),
        "gpuBudget": plan.gpu_budget,
        "gpusPlanned": plan.gpus_planned,
        "desiredReplicas": plan.desired_replicas,
        "readyReplicas": sum(_ready(v) for v in plan.variants),
        "variants": [variant_wire(v) for v in plan.variants],
        "reservations": [grant_wire(g) for g in plan.reservations],
        "conditions": [condition_wire(c) for c in conditions],
    }
    return BuiltPoolStatus(wire, tuple(conditions), previous_from_plan(plan))


def errors_message(errors: Sequence[InputError], limit: int = MESSAGE_LIMIT) -> str:
    return "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors)[:limit]


def previous_from_status(status: ModelPoolStatus | None) -> PreviousPlan | None:
    """The plan a status records, as the planner reads it back."""
    if status is None or status.planned_at is None:
        return None
    variants = {
        entry.name: PreviousVariant(
            desired_replicas=entry.desired_replicas,
            recommendations=tuple(Recommendation(r.at, r.replicas) for r in entry.recommendations)
            or (Recommendation(status.planned_at, entry.desired_replicas),),
            last_scale_time=entry.last_scale_time,
            capacity=capacity_from_status(entry.capacity),
        )
        for entry in status.variants
    }
    return PreviousPlan(status.planned_at, variants)


def previous_from_plan(plan: PoolPlan) -> PreviousPlan:
    """What previous_from_status gives for `plan`'s status, without reading the status back
    (the pool's own plan: its recommendations are never empty)."""
    return PreviousPlan(
        plan.at,
        {
            v.name: PreviousVariant(
                desired_replicas=v.desired_replicas,
                recommendations=v.recommendations,
                last_scale_time=v.last_scale_time,
                capacity=v.capacity,
            )
            for v in plan.variants
        },
    )


def reservation_status(
    grant: ReservationGrant,
    generation: int | None,
    overcommitted: bool,
    previous_conditions: Sequence[Condition] | None,
    now: datetime,
    expired: bool = False,
) -> ReservationStatus:
    message = grant.message
    if grant.granted and overcommitted:
        message += "; the pool's floors exceed its gpuBudget (Overcommitted)"
    if grant.granted:
        reason = "Granted"
    elif not grant.active:
        reason = "Expired" if expired else "NotActive"
    else:
        reason = "NotGranted"
    condition = PlanCondition("Granted", "True" if grant.granted else "False", reason, message)
    return ReservationStatus(
        observed_generation=generation,
        granted=grant.granted,
        active=grant.active,
        granted_replicas=grant.granted_replicas,
        message=message,
        conditions=merge_conditions(previous_conditions, [condition], now, generation),
    )


# One status model per distinct route, shared (frozen): pools made from the same template
# plan the same routes with the same weights, and a route's weights come back after a
# readiness change (the 1,000 benchmark pools plan about 900 distinct routes of 8,500).
@lru_cache(maxsize=4096)
def effective_route(route: TableRoute) -> EffectiveRoute:
    return EffectiveRoute.model_validate(_route_tree(route))


def effective_routes(table: RoutingTable) -> list[EffectiveRoute]:
    return [effective_route(route) for route in table.routes]


# A route as the status writes it: dumped once per distinct route, not once per write (a
# policy with budgets writes its status every refresh, and its routes are half of it).
# Shared, like the models above: what is written is serialized, never changed.
@lru_cache(maxsize=4096)
def _route_wire(route: TableRoute) -> dict[str, Any]:
    return effective_route(route).model_dump(by_alias=True, mode="json")


def routes_as_written(table: RoutingTable) -> tuple[list[EffectiveRoute], list[dict[str, Any]]]:
    """The table's routes as the status models hold them, and as the status writes them."""
    return effective_routes(table), [_route_wire(route) for route in table.routes]


_POLICY_STATUS_KEYS = tuple(
    field.alias or name for name, field in RoutingPolicyStatus.model_fields.items()
)


def policy_status_wire(
    status: RoutingPolicyStatus, routes_wire: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """status.model_dump(by_alias=True, mode="json"), in its order, given its routes as
    routes_as_written wrote them."""
    rest = status.model_dump(by_alias=True, mode="json", exclude={"routes"})
    return {key: routes_wire if key == "routes" else rest[key] for key in _POLICY_STATUS_KEYS}


# A route's match outlives many of its weights (every readiness or load change makes new
# routes): one status model per distinct match, shared (frozen) by the routes that have it.
@lru_cache(maxsize=4096)
def _route_match(match: RouteMatchSpec) -> RouteMatch:
    return RouteMatch.model_validate(
        {
            "task_type": list(match.task_types),
            "model": list(match.models),
            "headers": [{"name": n, "value": v} for n, v in match.headers],
        }
    )


def _route_tree(route: TableRoute) -> dict[str, Any]:
    return {
        "name": route.name,
        "match": _route_match(route.match),
        "backends": [{"variant": b.variant, "weight": b.weight} for b in route.backends],
        "degraded_from": route.degraded_from,
        "note": route.note or None,
    }


def routes_status(table: RoutingTable) -> RoutingPolicyStatus:
    """The planned routes alone (a partial status: no hash, no conditions)."""
    return RoutingPolicyStatus.model_validate({"routes": effective_routes(table)})


def policy_conditions(
    ready: PlanCondition,
    budgets: BudgetPlan | None,
    previous_conditions: Sequence[Condition] | None,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """The policy's conditions: Ready, and SpendObserved while it has budgets."""
    current = [ready]
    if budgets is not None and budgets.condition is not None:
        current.append(budgets.condition)
    else:  # no budgets (any more): nothing to observe
        previous_conditions = [c for c in previous_conditions or [] if c.type != "SpendObserved"]
    return replace_conditions(previous_conditions, current, now, generation)


def policy_status(
    config_hash: str | None,
    generation: int | None,
    conditions: Sequence[Condition],
    budgets: BudgetPlan,
    routes: Sequence[EffectiveRoute],
) -> RoutingPolicyStatus:
    """`conditions`: as policy_conditions gives them; `routes`: the table's routes as
    effective_routes gives them."""
    return RoutingPolicyStatus.model_validate(
        {
            "observed_generation": generation,
            "config_hash": config_hash,
            "routes": routes,
            "budgets": [state.status() for state in budgets.states],
            "conditions": conditions,
        }
    )
