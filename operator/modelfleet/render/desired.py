"""The operator's whole cycle as one pure function: `desired(inputs) -> Desired`.

Everything the operator knows goes in (the custom resources with their status, which holds
the previous plans; observations; API keys; Service addresses; `now`); everything it
writes comes out: each variant's Deployment and Service, each gateway's files with the
ConfigMap and Secret that carry them, the status of every input resource, and the Events.
The controller, `modelfleet plan`, `modelfleet render`, the benchmarks and the simulator
all call this function; nothing else assembles a cycle.

    observe -> plan (scaling, routing, billing) -> render (this) -> apply
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from modelfleet.api import STATUS_MODELS
from modelfleet.api.common import Condition
from modelfleet.api.load import InputError, Resources, check_references
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.names import routes_secret_name
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy, RoutingPolicyStatus
from modelfleet.observe.observation import variant_key
from modelfleet.plan.billing import CostLine, ledger_lines
from modelfleet.plan.budgets import (
    DEGRADED,
    BudgetPlan,
    gates,
    plan_budgets,
    with_budget_companions,
)
from modelfleet.plan.routing.planner import previous_weights
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.plan.scaling.slo import slo_targets
from modelfleet.plan.scaling.types import PlanCondition, PoolPlan, PreviousPlan
from modelfleet.render.gateway import GatewayConfig, gateway_config
from modelfleet.render.gateway_workload import gateway_name, gateway_workloads
from modelfleet.render.inputs import FleetInputs, Key, ObjectRef, Rejected
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import (
    BuiltPoolStatus,
    errors_message,
    policy_conditions,
    policy_status,
    policy_status_wire,
    pool_status,
    previous_from_status,
    replace_conditions,
    reservation_status,
    routes_as_written,
    routes_status,
)


@dataclass(frozen=True, eq=False)
class StatusUpdate:
    """The status one resource should have: a model, or a pool's status as it is built (its
    wire form; the model is made from it only when asked for). `partial`: only the fields
    set are written (a rejected resource keeps its last good plan and gets its conditions)."""

    target: ObjectRef
    content: BaseModel | BuiltPoolStatus
    partial: bool = False
    # A policy's routes as written (routes_as_written): the rest of its status is dumped.
    routes_wire: list[dict[str, Any]] | None = None

    @property
    def status(self) -> BaseModel:
        content = self.content
        return content.model if isinstance(content, BuiltPoolStatus) else content

    def wire(self) -> dict[str, Any]:
        content = self.content
        if isinstance(content, BuiltPoolStatus):
            return content.wire
        if self.routes_wire is not None and not self.partial:
            assert isinstance(content, RoutingPolicyStatus)
            return policy_status_wire(content, self.routes_wire)
        return content.model_dump(by_alias=True, mode="json", exclude_unset=self.partial)

    def same_as(self, read: BaseModel | None) -> bool:
        """Whether this is the status its resource was read with."""
        if read is None or self.partial:
            return False
        if isinstance(self.content, BuiltPoolStatus):
            return self.content.wire == read.model_dump(by_alias=True, mode="json")
        return self.content == read


@dataclass(frozen=True)
class Event:
    target: ObjectRef
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass
class Desired:
    now: datetime
    plans: dict[Key, PoolPlan] = field(default_factory=dict)
    tables: dict[Key, RoutingTable] = field(default_factory=dict)  # by policy
    workloads: list[dict[str, Any]] = field(default_factory=list)  # Services, Deployments
    gateways: dict[Key, GatewayConfig] = field(default_factory=dict)  # to publish, by policy
    statuses: dict[tuple[str, str, str], StatusUpdate] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    costs: dict[Key, list[CostLine]] = field(default_factory=dict)  # since the previous plan
    budgets: dict[Key, BudgetPlan] = field(default_factory=dict)  # by policy

    def status_of(self, kind: str, namespace: str, name: str) -> BaseModel | None:
        update = self.statuses.get((kind, namespace, name))
        return update.status if update else None

    def set_status(
        self,
        target: ObjectRef,
        status: BaseModel | BuiltPoolStatus,
        partial: bool = False,
        routes_wire: list[dict[str, Any]] | None = None,
    ) -> None:
        self.statuses[(target.kind, target.namespace, target.name)] = StatusUpdate(
            target, status, partial, routes_wire
        )

    def statuses_to_write(self, read: Iterable[Any] = ()) -> list[StatusUpdate]:
        """The statuses to write, given the resources this cycle `read`: a status equal to
        the one its resource was read with is left as it is (most policies' and
        Reservations' hold from one refresh to the next); a partial one is always written."""
        as_read = {(r.kind, r.namespace, r.name): r.status for r in read}
        return [
            update for key, update in self.statuses.items() if not update.same_as(as_read.get(key))
        ]


EVENT_MESSAGE_LIMIT = 1000
# Not granted, and nothing is wrong: the Reservation's window is not open (yet, or any more).
QUIET_REASONS = frozenset({"NotActive", "Expired"})


def desired(inputs: FleetInputs, cache: RenderCache | None = None) -> Desired:
    """Everything the operator should write, given everything it knows. `cache` (kept by
    the caller between cycles) lets gateways render in proportion to what changed; the
    result is the same with or without it."""
    if cache is None:  # (an empty cache is falsy)
        cache = RenderCache()
    if inputs.now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Everything the operator writes is in UTC (RFC 3339 with Z).
    now = inputs.now.astimezone(UTC)
    if now is not inputs.now:  # (astimezone gives the same object back when already UTC)
        inputs = replace(inputs, now=now)
    out = Desired(inputs.now)
    pools = {(p.namespace, p.name): p for p in inputs.pools}
    rejected_pools = {r.ref.key for r in inputs.rejected if r.ref.kind == "ModelPool"}
    for rejected in inputs.rejected:
        _reject(out, rejected)
    reservations_of = _by_pool(inputs.reservations)
    policies_of = _by_pool(inputs.policies)
    for key, pool in pools.items():
        _pool(out, inputs, pool, reservations_of.get(key, ()), policies_of.get(key, ()), cache)
    for reservation in inputs.reservations:
        key = (reservation.namespace, reservation.spec.pool)
        if key not in pools and key not in rejected_pools:
            _pool_not_found(out, inputs.now, reservation, "Granted")
    for policy in inputs.policies:
        key = (policy.namespace, policy.spec.pool)
        if key in pools:
            _policy(out, inputs, policy, pools[key], reservations_of.get(key, ()), cache)
        elif key not in rejected_pools:
            _pool_not_found(out, inputs.now, policy, "Ready")
    return out


def _by_pool(resources: Iterable[Any]) -> dict[Key, list[Any]]:
    """Reservations or policies by the pool they name, in input order."""
    grouped: dict[Key, list[Any]] = {}
    for resource in resources:
        grouped.setdefault((resource.namespace, resource.spec.pool), []).append(resource)
    return grouped


# -- pools -------------------------------------------------------------------------------


def _pool(
    out: Desired,
    inputs: FleetInputs,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    policies: Sequence[RoutingPolicy],
    cache: RenderCache,
) -> None:
    key = (pool.namespace, pool.name)
    now = inputs.now
    written = inputs.written_statuses.get(key)
    if written is not None:
        previous = written.previous
        # The status parsed before this process wrote its own is not read again.
        cache.previous_plans.forget(key)
    else:
        # A status read from the API server is parsed once per change: the same object
        # comes back until it changes.
        previous = cache.previous_plans.get(
            key, (pool.status,), lambda: previous_from_status(pool.status)
        )
    before = _conditions_now(pool, written)
    slos = cache.slo_targets.get(
        key,
        tuple(policy.spec for policy in policies),
        lambda: slo_targets(pool.namespace, pool.name, policies),
    )
    plan = plan_pool(pool, reservations, inputs.observations, now, previous, slos)
    out.plans[key] = plan
    ref = ObjectRef.of(pool)
    for index, variant_plan in enumerate(plan.variants):
        if inputs.render_workloads:
            replicas = variant_plan.desired_replicas
            out.workloads.extend(cache.workloads.manifests(pool, index, replicas))
        out.events.extend(_scale_events(ref, inputs, pool, variant_plan, previous))
    status = pool_status(plan, pool.metadata.generation, before, inputs.metrics_errors.get(key))
    out.set_status(ref, status)
    overcommitted = plan.condition("Overcommitted")
    is_overcommitted = overcommitted is not None and overcommitted.status == "True"
    by_name = {r.name: r for r in reservations}
    for grant in plan.reservations:
        reservation = by_name[grant.name]
        before = reservation.status.conditions if reservation.status else None
        reservation_ref = ObjectRef.of(reservation)
        window = reservation.spec.window
        expired = window is not None and window.end is not None and now >= window.end
        granted = reservation_status(
            grant, reservation.metadata.generation, is_overcommitted, before, now, expired
        )
        out.set_status(reservation_ref, granted)
        out.events.extend(_condition_events(reservation_ref, before, granted.conditions))
    if previous is not None and now > previous.at and inputs.render_workloads:
        out.costs[key] = _costs(inputs, pool, reservations, plan, previous)


def _conditions_now(pool: ModelPool, written: BuiltPoolStatus | None) -> Sequence[Condition] | None:
    """The conditions the pool's status holds: as this process wrote them, when the pool was
    read back with that status (and so without a parsed one), else as read."""
    if written is not None:
        return written.conditions
    return pool.status.conditions if pool.status else None


def _scale_events(
    ref: ObjectRef,
    inputs: FleetInputs,
    pool: ModelPool,
    plan: Any,
    previous: PreviousPlan | None,
) -> Iterable[Event]:
    deployed = inputs.deployed_replicas.get(variant_key(pool.namespace, pool.name, plan.name))
    before = previous.variants.get(plan.name) if previous else None
    desired_count = plan.desired_replicas
    planned_before = before.desired_replicas if before is not None else deployed or 0
    if planned_before != desired_count:
        yield Event(
            ref,
            "Normal",
            "Scaled",
            f"{plan.name}: {planned_before} -> {desired_count} ({plan.reason}): {plan.message}"[
                :EVENT_MESSAGE_LIMIT
            ],
        )
    elif deployed is not None and deployed != desired_count:
        yield Event(
            ref,
            "Warning",
            "ReplicasRestored",
            f"{plan.name}: Deployment had {deployed} replicas, set by hand; restored the "
            f"planned {desired_count} ({plan.reason})",
        )


def _costs(
    inputs: FleetInputs,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    plan: PoolPlan,
    previous: PreviousPlan,
) -> list[CostLine]:
    """What the pool cost since its previous plan: its ready replicas' hours, the
    Reservations' held hours, and what every tenant used through the gateways."""
    hours = (inputs.now - previous.at).total_seconds() / 3600
    ready = {
        v.name: (v.observation.ready_replicas or 0) if v.observation else 0 for v in plan.variants
    }
    replica_hours = {name: count * hours for name, count in ready.items()}
    usage = inputs.usage.get((pool.namespace, pool.name), {})
    return ledger_lines(pool, reservations, replica_hours, previous.at, inputs.now, usage)


# -- routing policies --------------------------------------------------------------------


def _policy(
    out: Desired,
    inputs: FleetInputs,
    policy: RoutingPolicy,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    cache: RenderCache,
) -> None:
    key = (policy.namespace, policy.name)
    ref = ObjectRef.of(policy)
    status = policy.status
    before = status.conditions if status else None
    generation = policy.metadata.generation
    errors = cache.references.get(
        key,
        (policy.spec, pool.spec),
        lambda: check_references(Resources(pools=[pool], policies=[policy])),
    )
    if errors:
        _refuse(out, ref, generation, before, "InvalidSpec", errors, inputs.now)
        return
    table = cache.routing.table(policy, pool, inputs.observations, previous_weights(policy))
    budgets = _budgets(inputs, policy, pool, reservations)
    if any(state.state == DEGRADED for state in budgets.states):
        table = with_budget_companions(table, pool)
    out.tables[key] = table
    out.budgets[key] = budgets
    if inputs.gateway is None:
        # No gateway to publish: the planned routes alone, so that the next cycle's latency
        # shift continues from them.
        routes = cache.planned_routes.get(key, (table,), lambda: routes_status(table))
        out.set_status(ref, routes, partial=True)
        return
    key_errors = inputs.api_key_errors.get(key, ())
    keys = inputs.api_keys.get(key, ())
    if key_errors:
        _refuse(out, ref, generation, before, "ApiKeysInvalid", key_errors, inputs.now)
        return
    if not keys:
        _refuse(out, ref, generation, before, "NoApiKeys", [_no_keys(policy)], inputs.now)
        return
    addresses = inputs.service_addresses.get((pool.namespace, pool.name), {})
    gateway = gateway_config(
        table,
        pool,
        policy,
        keys,
        addresses,
        inputs.gateway,
        cache.gateways,
        gates(budgets, keys),
    )
    out.gateways[key] = gateway
    if inputs.gateway.image is not None:
        out.workloads.extend(gateway_workloads(policy, inputs.gateway))
    ready = _serving(inputs, policy, pool, table, gateway.config_hash)
    routes, routes_wire = cache.route_statuses.get(key, (table,), lambda: routes_as_written(table))
    conditions = policy_conditions(ready, budgets, before, inputs.now, generation)
    new = cache.policy_statuses.get(
        key,
        (routes, gateway.config_hash, generation, budgets.states, conditions),
        lambda: policy_status(gateway.config_hash, generation, conditions, budgets, routes),
    )
    out.set_status(ref, new, routes_wire=routes_wire)
    out.events.extend(_condition_events(ref, before, new.conditions))
    out.events.extend(Event(ref, n.type, n.reason, n.message) for n in budgets.notices)


def _budgets(
    inputs: FleetInputs,
    policy: RoutingPolicy,
    pool: ModelPool,
    reservations: Sequence[Reservation],
) -> BudgetPlan:
    key = (policy.namespace, policy.name)
    return plan_budgets(
        policy,
        pool,
        reservations,
        inputs.now,
        inputs.budget_usage.get(key),
        inputs.budget_usage_errors.get(key),
    )


def _serving(
    inputs: FleetInputs,
    policy: RoutingPolicy,
    pool: ModelPool,
    table: RoutingTable,
    config_hash: str,
) -> PlanCondition:
    """Ready means traffic can be served: the config is published, a gateway pod runs it
    (when the operator runs the pods), and some route has a backend with a ready replica."""
    key = (policy.namespace, policy.name)
    config_map = policy.spec.gateway.config_map
    published = (
        f"config {config_hash} in ConfigMap {config_map} and Secret "
        f"{routes_secret_name(config_map)}"
    )
    assert inputs.gateway is not None
    if inputs.gateway.image is not None and not inputs.gateway_ready.get(key):
        return PlanCondition(
            "Ready",
            "False",
            "GatewayNotRunning",
            f"no pod of Deployment {gateway_name(policy)} is ready yet; {published}",
        )
    routed = {b.variant for route in table.routes for b in route.backends}
    ready = {
        name
        for name in routed
        if (obs := inputs.observations.get(variant_key(pool.namespace, pool.name, name))) is None
        or obs.ready_replicas is None
        or obs.ready_replicas > 0
    }
    if routed and not ready:
        return PlanCondition(
            "Ready",
            "False",
            "NoReadyBackend",
            f"no variant the routes send to has a ready replica ({', '.join(sorted(routed))})"
            f": requests get 503 until one is ready; {published}",
        )
    return PlanCondition("Ready", "True", "ConfigPublished", published)


def _no_keys(policy: RoutingPolicy) -> InputError:
    secret = policy.spec.gateway.api_key_secret
    return InputError(
        f"Secret {policy.namespace}/{secret}",
        policy.ref,
        "spec.gateway.apiKeySecret",
        "holds no API key: every request would be refused (401); add keys to it. The "
        "gateway keeps its last good config meanwhile",
    )


def refuse_gateway(result: Desired, policy: RoutingPolicy, reason: str, message: str) -> None:
    """Amend `result` for a gateway the apply step could not publish (Envoy refused the
    render): nothing of it is written, the routes and hash of the last good config stay in
    the policy's status, and Ready says why the new one is not served."""
    ref = ObjectRef.of(policy)
    result.gateways.pop(ref.key, None)
    last = policy.status
    before = last.conditions if last else None
    condition = PlanCondition("Ready", "False", reason, message)
    conditions = replace_conditions(before, [condition], result.now, policy.metadata.generation)
    update = result.statuses[(ref.kind, ref.namespace, ref.name)]
    status = update.status.model_copy(
        update={
            "conditions": conditions,
            "config_hash": last.config_hash if last else None,
            "routes": last.routes if last else [],
            # The budgets as the last good config enforces them; the next cycle tries again.
            "budgets": last.budgets if last else [],
        }
    )
    result.set_status(ref, status)
    result.events[:] = [e for e in result.events if e.target != ref]
    result.events.extend(_condition_events(ref, before, conditions))


def failed_cycle(
    pool: ModelPool,
    reason: str,
    message: str,
    now: datetime,
    written: BuiltPoolStatus | None = None,
) -> StatusUpdate:
    """The pool's status after a cycle that could not finish: its last plan stays, and the
    Reconciled condition says what failed. `written`: the status as this process wrote it,
    when the pool was read back with it (and so without a parsed status)."""
    before = _conditions_now(pool, written)
    condition = PlanCondition("Reconciled", "False", reason, message)
    conditions = replace_conditions(before, [condition], now, pool.metadata.generation)
    status = STATUS_MODELS[pool.kind](conditions=conditions)
    return StatusUpdate(ObjectRef.of(pool), status, partial=True)


# -- what every kind shares --------------------------------------------------------------


def _condition_events(
    ref: ObjectRef, before: Sequence[Condition] | None, after: Sequence[Condition]
) -> Iterable[Event]:
    """An Event when a Ready or Granted condition changes its reason (or fails anew): a
    Warning while it fails, Normal when it recovers. A policy's first success is news only
    in its status; a Reservation's first grant is an Event too."""
    previous = {c.type: c for c in before or []}
    for condition in after:
        if condition.type not in ("Ready", "Granted"):
            continue
        old = previous.get(condition.type)
        failing = condition.status == "False" and condition.reason not in QUIET_REASONS
        if old is None:
            news = failing or condition.type == "Granted"
        else:
            news = old.reason != condition.reason or (failing and old.message != condition.message)
        if news:
            yield Event(
                ref,
                "Warning" if failing else "Normal",
                condition.reason,
                condition.message[:EVENT_MESSAGE_LIMIT],
            )


def _refuse(
    out: Desired,
    ref: ObjectRef,
    generation: int | None,
    before: Sequence[Condition] | None,
    reason: str,
    errors: Sequence[InputError],
    now: datetime,
) -> None:
    condition_type = "Granted" if ref.kind == "Reservation" else "Ready"
    condition = PlanCondition(condition_type, "False", reason, errors_message(errors))
    conditions = replace_conditions(before, [condition], now, generation)
    out.set_status(ref, STATUS_MODELS[ref.kind](conditions=conditions), partial=True)
    out.events.extend(_condition_events(ref, before, conditions))


def _reject(out: Desired, rejected: Rejected) -> None:
    _refuse(
        out,
        rejected.ref,
        rejected.generation,
        rejected.conditions,
        "InvalidSpec",
        rejected.errors,
        out.now,
    )


def _pool_not_found(
    out: Desired, now: datetime, resource: Reservation | RoutingPolicy, condition_type: str
) -> None:
    ref = ObjectRef.of(resource)
    error = InputError(
        "",
        resource.ref,
        "spec.pool",
        f"no ModelPool {resource.spec.pool!r} in namespace {resource.namespace!r}: "
        "create it or fix the name",
    )
    before = resource.status.conditions if resource.status else None
    condition = PlanCondition(condition_type, "False", "PoolNotFound", errors_message([error]))
    conditions = replace_conditions(before, [condition], now, resource.metadata.generation)
    out.set_status(ref, STATUS_MODELS[ref.kind](conditions=conditions), partial=True)
    out.events.extend(_condition_events(ref, before, conditions))
