"""Pure: (RoutingPolicy, ModelPool, observations) -> RoutingTable.

Per route, in this order:
1. Backends with configured weight 0 never get traffic.
2. Variants with no ready replica drop out; if none is left, the route keeps its configured
   weights (Envoy answers 503 until one is ready) rather than vanishing.
3. `maxCostPerRequest` drops variants that cost more per request; if all do, the cheapest
   stays. It runs after readiness so that a ready variant over the cap still serves when
   every variant under the cap is down: a route degrades in cost, never in availability.
4. The survivors' weights are rescaled to integers summing to 100.
5. On a route with an SLO, weight moves by bounded steps from a backend that misses it to
   those with headroom, and back when it recovers (plan/routing/latency.py).
Then every tripped degrade rule puts a companion route (`x-priority` -> fallback) directly
before each route that sends weight to the overloaded variant.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from modelfleet.api.load import InvalidInput, Resources, check_references
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import Backend, DegradeRule, Route, RoutingPolicy
from modelfleet.observe.observation import Observations, VariantObservation, variant_key
from modelfleet.plan.routing.cost import CostEstimate, cost_per_request
from modelfleet.plan.routing.latency import Shift, route_target, shift_weights
from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable, TableRoute, WeightedBackend
from modelfleet.plan.routing.weights import apportion
from modelfleet.plan.scaling.slo import slo_reading

PRIORITY_HEADER = "x-priority"
TOTAL_WEIGHT = 100
_MAX_LABEL = 63
_DEGRADED = "-degraded-"
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def _routed(observation: VariantObservation | None) -> VariantObservation | None:
    if observation is None:
        return None
    return VariantObservation(
        ready_replicas=observation.ready_replicas,
        waiting=observation.waiting,
        qps=observation.qps,
        p99_latency_seconds=observation.p99_latency_seconds,
        p99_ttft_seconds=observation.p99_ttft_seconds,
    )


def routed_observations(
    pool: ModelPool, observations: Observations
) -> tuple[VariantObservation | None, ...]:
    """What routing reads of each variant's observation, in the spec's variant order: ready
    replicas, waiting requests, QPS and the p99s, nothing else (not the sample time: the
    same values sampled again route the same, so a caller may keep the table they gave)."""
    return tuple(
        _routed(observations.get(variant_key(pool.namespace, pool.name, v.name)))
        for v in pool.spec.variants
    )


class _PoolView:
    """The pool as the planner sees it: variants plus what routing reads of them."""

    def __init__(self, pool: ModelPool, routed: Sequence[VariantObservation | None]):
        self.pool = pool
        # By variant name, looked up once: every route asks about its backends.
        self._observed = {v.name: seen for v, seen in zip(pool.spec.variants, routed, strict=True)}

    def observation(self, variant: str) -> VariantObservation | None:
        return self._observed.get(variant)

    def is_ready(self, variant: str) -> bool:
        # No observation means the variant's Deployment exists but metrics have not arrived:
        # routing away from it would turn a metrics outage into a traffic outage.
        observation = self.observation(variant)
        if observation is None or observation.ready_replicas is None:
            return True
        return observation.ready_replicas > 0

    def cost(self, variant: str) -> CostEstimate | None:
        spec = self.pool.spec.variant(variant)
        assert spec is not None, "check_references guarantees every backend names a variant"
        return cost_per_request(spec, self.observation(variant))


def previous_weights(policy: RoutingPolicy) -> dict[str, dict[str, int]]:
    """The weights the policy's status says each route had last cycle (its own routes,
    not degrade companions), for the latency shift to continue from."""
    status = policy.status
    if status is None:
        return {}
    return {
        route.name: {b.variant: b.weight for b in route.backends}
        for route in status.routes
        if route.degraded_from is None
    }


def plan_routing(
    policy: RoutingPolicy,
    pool: ModelPool,
    observations: Observations,
    previous: Mapping[str, Mapping[str, int]] | None = None,
    references_checked: bool = False,
    routed: Sequence[VariantObservation | None] | None = None,
) -> RoutingTable:
    """The gateway's routing table for `policy` over `pool`, given what is observed now;
    `previous`: last cycle's weights per route (previous_weights), for the latency shift;
    `routed`: routed_observations(pool, observations), when the caller has it already.
    Raises InvalidInput when the policy names what the pool lacks (unless the caller
    checked that already)."""
    if not references_checked:
        errors = check_references(Resources(pools=[pool], policies=[policy]))
        if errors:
            raise InvalidInput(errors)
    fleet = _PoolView(pool, routed_observations(pool, observations) if routed is None else routed)
    tripped = [rule for rule in policy.spec.degrade if _is_tripped(rule, fleet)]
    taken = {route.name for route in policy.spec.routes}
    routes: list[TableRoute] = []
    for route in policy.spec.routes:
        planned = _plan_route(route, fleet, (previous or {}).get(route.name))
        companions, planned = _degrade_companions(planned, tripped, fleet, taken)
        routes.extend(companions)
        routes.append(planned)
    return RoutingTable(
        namespace=policy.namespace, policy=policy.name, pool=pool.name, routes=tuple(routes)
    )


def _latency_shift(
    route: Route, live: Sequence[Backend], shares: list[int], fleet: _PoolView, previous
) -> Shift | None:
    target = route_target(route.name, route.slo)
    if target is None or len(live) < 2:
        return None

    def headroom(variant: str) -> float:
        spec = fleet.pool.spec.variant(variant)
        assert spec is not None
        return spec.slo.headroom

    return shift_weights(
        [b.variant for b in live],
        shares,
        previous,
        lambda variant: slo_reading(target, fleet.observation(variant)),
        headroom,
    )


def _plan_route(route: Route, fleet: _PoolView, previous=None) -> TableRoute:
    notes: list[str] = []
    configured = [b for b in route.backends if b.weight > 0]
    ready = [b for b in configured if fleet.is_ready(b.variant)]
    unready = _names(b for b in configured if not fleet.is_ready(b.variant))
    if ready:
        live = ready
        if unready:
            notes.append(f"no ready replica: {unready}; their weight went to the others")
    else:
        live = configured
        notes.append(
            f"no ready backend (0 ready replicas: {unready}): kept the configured weights, "
            "Envoy answers 503 until one is ready"
        )
    if route.max_cost_per_request is not None:
        live, cost_notes = _within_cost(live, route.max_cost_per_request, fleet)
        notes.extend(cost_notes)
    shares = apportion([b.weight for b in live], TOTAL_WEIGHT)
    rounded_away = _names(b for b, share in zip(live, shares, strict=True) if share == 0)
    if rounded_away:
        notes.append(f"weight too small to get 1 of {TOTAL_WEIGHT}: {rounded_away}")
    shift = _latency_shift(route, live, shares, fleet, previous)
    if shift is not None:
        shares = shift.weights
        if shift.note:
            notes.append(shift.note)
    return TableRoute(
        name=route.name,
        match=RouteMatchSpec(
            task_types=tuple(route.match.task_type),
            models=tuple(route.match.model),
            headers=tuple((h.name, h.value) for h in route.match.headers),
        ),
        backends=tuple(
            WeightedBackend(b.variant, share)
            for b, share in zip(live, shares, strict=True)
            if share > 0
        ),
        note="; ".join(notes),
    )


def _within_cost(
    backends: Sequence[Backend], max_cost: float, fleet: _PoolView
) -> tuple[list[Backend], list[str]]:
    estimates = [(b, fleet.cost(b.variant)) for b in backends]
    kept = [b for b, cost in estimates if cost is None or cost.per_request <= max_cost]
    too_dear = [
        (b, cost) for b, cost in estimates if cost is not None and cost.per_request > max_cost
    ]
    notes = []
    unknown = _names(b for b, cost in estimates if cost is None)
    if unknown:
        notes.append(
            f"cost per request unknown for {unknown} (no observed QPS and no "
            "requestsPerSecondPerReplica): kept"
        )
    if not kept:
        # min() keeps the first of equals, so ties go to the earlier backend in the spec.
        cheapest, cost = min(too_dear, key=lambda pair: pair[1].per_request)
        kept = [cheapest]
        notes.append(
            f"every backend costs more than maxCostPerRequest {max_cost:g}: kept the cheapest, "
            f"{cheapest.variant} ({cost.describe()})"
        )
        too_dear = [(b, c) for b, c in too_dear if b is not cheapest]
    if too_dear:
        dropped = ", ".join(f"{b.variant} ({cost.describe()})" for b, cost in too_dear)
        notes.append(f"over maxCostPerRequest {max_cost:g}, dropped: {dropped}")
    return kept, notes


def _is_tripped(rule: DegradeRule, fleet: _PoolView) -> bool:
    observation = fleet.observation(rule.variant)
    return (
        observation is not None
        and observation.waiting is not None
        and observation.waiting > rule.waiting_above
    )


def _degrade_companions(
    planned: TableRoute, tripped: Sequence[DegradeRule], fleet: _PoolView, taken: set[str]
) -> tuple[list[TableRoute], TableRoute]:
    """Companion routes for `planned` (in rule order) and `planned`, its note amended."""
    sends_to = {b.variant for b in planned.backends}
    own_priority = next(
        (value for name, value in planned.match.headers if name.lower() == PRIORITY_HEADER), None
    )
    by_priority: dict[str, list[DegradeRule]] = {}
    route_notes = [planned.note] if planned.note else []
    for rule in tripped:
        if rule.variant not in sends_to:
            continue
        if own_priority is not None and own_priority != rule.priority:
            route_notes.append(
                f"degrade rule for {rule.variant} not applied: this route only matches "
                f"{PRIORITY_HEADER}: {own_priority}, never {rule.priority}"
            )
            continue
        by_priority.setdefault(rule.priority, []).append(rule)
    companions = []
    for priority, rules in by_priority.items():
        name = companion_name(planned.name, priority, taken)
        taken.add(name)
        headers = planned.match.headers
        if own_priority is None:
            headers = (*headers, (PRIORITY_HEADER, priority))
        companions.append(
            TableRoute(
                name=name,
                match=RouteMatchSpec(planned.match.task_types, planned.match.models, headers),
                backends=(WeightedBackend(rules[0].fallback, TOTAL_WEIGHT),),
                degraded_from=planned.name,
                note=_companion_note(rules, fleet),
            )
        )
    if len(route_notes) == (1 if planned.note else 0):
        return companions, planned  # no rule note added: the note is as it was
    return companions, planned._replace(note="; ".join(route_notes))


def _companion_note(rules: Sequence[DegradeRule], fleet: _PoolView) -> str:
    rule = rules[0]
    observation = fleet.observation(rule.variant)
    assert observation is not None and observation.waiting is not None, "rule is tripped"
    notes = [
        f"{rule.variant} has {observation.waiting:g} requests waiting (over "
        f"{rule.waiting_above}): {PRIORITY_HEADER}: {rule.priority} goes to {rule.fallback}"
    ]
    if not fleet.is_ready(rule.fallback):
        notes.append(f"{rule.fallback} has no ready replica: Envoy answers 503 for these requests")
    for shadowed in rules[1:]:
        notes.append(
            f"the rule for {shadowed.variant} (fallback {shadowed.fallback}) uses the same "
            "priority and is shadowed by this one"
        )
    return "; ".join(notes)


def companion_name(route: str, priority: str, taken: set[str]) -> str:
    """`<route>-degraded-<priority>` as a DNS label; a digest stands in when that cannot be."""
    label = _NOT_LABEL_CHARS.sub("-", priority.lower()).strip("-")
    readable = f"{route}{_DEGRADED}{label}"
    if label and len(readable) <= _MAX_LABEL and readable not in taken:
        return readable
    digest = hashlib.sha256(f"{route}\0{priority}".encode()).hexdigest()[:8]
    prefix = route[: _MAX_LABEL - len(_DEGRADED) - len(digest)].rstrip("-")
    return f"{prefix}{_DEGRADED}{digest}"


def _names(backends: Iterable[Backend]) -> str:
    return ", ".join(b.variant for b in backends)
