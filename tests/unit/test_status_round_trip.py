"""A status read back from the API server plans as the status the operator remembered:
the simulator (and the operator between restarts) rely on it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.common import Condition
from modelfleet.api.modelpool import ModelPoolStatus
from modelfleet.api.routingpolicy import RoutingPolicyStatus
from modelfleet.observe.observation import VariantObservation
from modelfleet.plan.routing.planner import previous_weights
from modelfleet.plan.scaling.types import (
    Capacity,
    CapacityPoint,
    PlanCondition,
    PoolPlan,
    Recommendation,
    ReservationGrant,
    SignalResult,
    VariantPlan,
)
from modelfleet.render.desired import desired
from modelfleet.render.inputs import ParseCache
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import (
    condition_wire,
    pool_status,
    previous_from_plan,
    previous_from_status,
)
from tests.unit.test_gateway_cache import NOW, VARIANTS, cycle, inputs, resources


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=2, max_size=5))
def test_a_status_read_back_plans_as_the_one_remembered(cycles):
    cache = RenderCache()
    statuses: dict = {}
    for index, step in enumerate(cycles):
        result = desired(inputs(step, NOW + timedelta(seconds=30 * index), statuses), cache)
        for (namespace, name), plan in result.plans.items():
            written = result.statuses[("ModelPool", namespace, name)].status
            read = ModelPoolStatus.model_validate_json(written.model_dump_json(by_alias=True))
            assert previous_from_status(read) == previous_from_plan(plan)
        for namespace, name in result.tables:
            update = result.statuses[("RoutingPolicy", namespace, name)]
            wire = update.status.model_dump_json(by_alias=True, exclude_unset=update.partial)
            read = RoutingPolicyStatus.model_validate_json(wire)
            policy = inputs(step, NOW).policies[0]
            assert previous_weights(policy.model_copy(update={"status": read})) == (
                previous_weights(policy.model_copy(update={"status": update.status}))
            )
        statuses = {(ref[0],): update.status for ref, update in result.statuses.items()}


# -- a pool's status is built as its wire form: exactly what its model writes --------------

_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
_TIMES = st.builds(
    lambda seconds, micro, zone: (NOW + timedelta(seconds=seconds, microseconds=micro)).astimezone(
        zone
    ),
    st.integers(-86_400, 86_400),
    st.sampled_from([0, 1, 500_000]),
    _ZONES,
)
# A float field may be handed an int: the model writes it as a float.
_NUMBERS = st.none() | st.integers(0, 50) | st.floats(0, 1e6, allow_nan=False)
_WORDS = st.text("abc -:;é", max_size=12)


def _observations():
    return st.none() | st.builds(
        VariantObservation,
        ready_replicas=st.none() | st.integers(0, 20),
        running=_NUMBERS,
        waiting=_NUMBERS,
        qps=_NUMBERS,
        p99_latency_seconds=_NUMBERS,
        error_rate=_NUMBERS,
        sampled_at=st.none() | _TIMES,
        p99_ttft_seconds=_NUMBERS,
        p99_queue_seconds=_NUMBERS,
    )


def _capacities():
    point = st.builds(
        CapacityPoint,
        st.integers(1, 9) | st.floats(0.1, 50),
        st.integers(0, 2) | st.floats(0, 3),
        _TIMES,
        st.integers(1, 10),
    )
    return st.none() | st.builds(
        Capacity,
        st.none() | st.integers(1, 9) | st.floats(0.1, 50),
        st.sampled_from(["learned", "exploring", "floor", "spec", "none"]),
        _WORDS,
        st.lists(point, max_size=3).map(tuple),
    )


@st.composite
def _variant_plans(draw, name):
    return VariantPlan(
        name=name,
        desired_replicas=draw(st.integers(0, 20)),
        reason=draw(st.sampled_from(["schedule", "queue", "slo", "hold", "max"])),
        message=draw(_WORDS),
        priority=draw(st.integers(-5, 100)),
        gpus_per_replica=draw(st.integers(1, 8)),
        floor=draw(st.integers(0, 4)),
        signals=tuple(
            draw(st.lists(st.builds(SignalResult, _WORDS, st.integers(0, 20), _WORDS), max_size=3))
        ),
        active_schedules=tuple(draw(st.lists(_WORDS, max_size=2))),
        # The planner always records this cycle's recommendation.
        recommendations=tuple(
            draw(st.lists(st.builds(Recommendation, _TIMES, st.integers(0, 20)), min_size=1))
        ),
        last_scale_time=draw(st.none() | _TIMES),
        observation=draw(_observations()),
        metrics_problem=None,
        capacity=draw(_capacities()),
    )


@st.composite
def _pool_plans(draw):
    names = draw(st.lists(st.sampled_from(["small", "large", "spare"]), unique=True, max_size=3))
    grants = st.builds(
        ReservationGrant,
        st.just("ns"),
        st.sampled_from(["r1", "r2"]),
        _WORDS,
        st.sampled_from(names or ["small"]),
        st.integers(0, 9),
        st.booleans(),
        st.booleans(),
        st.integers(0, 9),
        _WORDS,
    )
    conditions = st.builds(
        PlanCondition,
        st.sampled_from(["MetricsAvailable", "Overcommitted"]),
        st.sampled_from(["True", "False", "Unknown"]),
        st.sampled_from(["Fine", "PrometheusUnavailable"]),
        _WORDS,
    )
    return PoolPlan(
        namespace="ns",
        name="pool",
        at=draw(_TIMES).astimezone(UTC),
        gpu_budget=draw(st.integers(0, 64)),
        variants=tuple(draw(_variant_plans(name)) for name in names),
        conditions=tuple(draw(st.lists(conditions, max_size=2, unique_by=lambda c: c.type))),
        reservations=tuple(draw(st.lists(grants, max_size=2))),
    )


TYPES = ["Ready", "Reconciled", "MetricsAvailable", "Overcommitted"]


@settings(max_examples=200, deadline=None)
@given(
    _pool_plans(),
    st.none() | st.integers(1, 9),
    st.none() | _WORDS,
    st.lists(st.booleans(), max_size=4),
)
def test_a_pool_status_built_as_wire_is_what_its_model_writes(plan, generation, error, kept):
    # Conditions from a previous status: some kept as they were (read back with fewer
    # fields set, or in another zone), some changed.
    before = [
        Condition.model_validate(
            {
                "type": t,
                "status": "True",
                "reason": "Fine",
                "message": "",
                "lastTransitionTime": "2026-11-30T10:00:00+01:00",
            }
        )
        for t, keep in zip(TYPES, kept, strict=False)
        if keep
    ]
    built = pool_status(plan, generation, before, error)
    model = ModelPoolStatus.model_validate(built.wire)
    # The same JSON, key order and number types included (3 and 3.0 differ in the text).
    assert json.dumps(built.wire) == json.dumps(model.model_dump(by_alias=True, mode="json"))
    assert built.model == model
    assert [condition_wire(c) for c in built.conditions] == built.wire["conditions"]
    assert previous_from_status(model) == built.previous == previous_from_plan(plan)


# -- the operator's own statuses, as its parse cache hands them back -----------------------


def _body(resource, status: dict | None, version: int, generations: dict) -> dict:
    """`resource` as the API server stores it: a new generation for each new spec."""
    body = resource.to_wire()
    spec = json.dumps(body["spec"], sort_keys=True)
    body["metadata"].update(
        uid=f"uid-{resource.kind}",
        generation=generations.setdefault((resource.kind, spec), len(generations) + 1),
        resourceVersion=str(version),
    )
    if status is not None:
        body["status"] = status
    return body


def _planned(parse_cache: ParseCache, bodies: list[dict], base, cache: RenderCache):
    pool, policy = (parse_cache.parse(body)[0] for body in bodies)
    written = parse_cache.written(bodies[0])
    pools = {(pool.namespace, pool.name): written} if written else {}
    return desired(replace(base, pools=[pool], policies=[policy], written_statuses=pools), cache)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=2, max_size=5))
def test_the_operator_plans_from_what_it_wrote_as_a_restarted_one_would(cycles):
    """Through the parse cache as the controller uses it: what the operator wrote comes back
    unparsed (the pool's status not even as a model). A restarted operator parses every
    status from the API server's copy instead. Both must write the same."""
    remembering, renders = ParseCache(), RenderCache()
    stored: dict = {"ModelPool": None, "RoutingPolicy": None}
    versions = {"ModelPool": 1, "RoutingPolicy": 1}
    generations: dict = {}
    for index, step in enumerate(cycles):
        base = inputs(step, NOW + timedelta(seconds=30 * index))
        policy, pool = resources(tuple(step["weights"]), step["port"])
        bodies = [
            _body(resource, stored[resource.kind], versions[resource.kind], generations)
            for resource in (pool, policy)
        ]
        if index:
            assert remembering.written(bodies[0]) is not None
            assert remembering.parse(bodies[0])[0].status is None
        result = _planned(remembering, bodies, base, renders)
        restarted = _planned(ParseCache(), bodies, base, RenderCache())
        assert {k: u.wire() for k, u in result.statuses.items()} == {
            k: u.wire() for k, u in restarted.statuses.items()
        }
        assert result.plans == restarted.plans
        assert result.events == restarted.events
        assert {k: g.files for k, g in result.gateways.items()} == {
            k: g.files for k, g in restarted.gateways.items()
        }
        read = [remembering.parse(body)[0] for body in bodies]
        for update in result.statuses_to_write(read):
            kind = update.target.kind
            wire = update.wire()
            stored[kind] = {**(stored[kind] or {}), **wire} if update.partial else wire
            versions[kind] += 1
            if not update.partial:
                target = update.target
                remembering.wrote(
                    kind, target.namespace, target.name, str(versions[kind]), update.content
                )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=1, max_size=4))
def test_a_policy_status_is_written_as_its_model_dumps(cycles):
    """A policy's routes are written as dumped once per distinct route, the rest of its
    status dumped at each write: the same JSON as the whole model's dump, key order and
    number types included, cycle after cycle (budgets, keys and weights moving)."""
    cache, statuses = RenderCache(), {}
    for index, step in enumerate(cycles):
        result = desired(inputs(step, NOW + timedelta(seconds=30 * index), statuses), cache)
        update = next(u for u in result.statuses.values() if u.target.kind == "RoutingPolicy")
        assert update.routes_wire is not None and not update.partial
        dumped = update.status.model_dump(by_alias=True, mode="json")
        assert json.dumps(update.wire()) == json.dumps(dumped)
        statuses = {(ref[0],): update.status for ref, update in result.statuses.items()}


def test_a_status_equal_to_the_one_read_is_not_written_again():
    step = {"observed": {}, "weights": [50, 50, 0], "keys": 1, "port": 8000}
    statuses: dict = {}
    for _ in range(2):  # the first plan has no previous one to hold: the second differs
        result = desired(inputs(step, NOW, statuses))
        statuses = {(kind,): update.status for (kind, _, _), update in result.statuses.items()}
    read = [*inputs(step, NOW, statuses).pools, *inputs(step, NOW, statuses).policies]
    assert desired(inputs(step, NOW, statuses)).statuses_to_write(read) == []
    # A moment later the pool's plan is a new one: its status is written.
    later = desired(inputs(step, NOW + timedelta(seconds=30), statuses))
    assert "ModelPool" in [u.target.kind for u in later.statuses_to_write(read)]


def test_a_policy_status_kept_from_the_last_cycle_follows_its_conditions():
    """The policy's status is reused while its routes, hash, budgets and conditions stay;
    its gateway pod going away changes Ready alone, and the status with it. (No spend is
    read: a budget's spend is observed anew each cycle, which writes its status anyway.)"""
    ready = VariantObservation(ready_replicas=1, waiting=0.0, running=1.0, qps=1.0, sampled_at=NOW)
    step = {"observed": dict.fromkeys(VARIANTS, ready), "weights": [50, 50, 0], "keys": 1}
    step["port"] = 8000
    cache, statuses = RenderCache(), {}
    ready_of = []
    for index, pods_ready in enumerate((1, 1, 0, 0, 1)):
        base = inputs(step, NOW + timedelta(seconds=30 * index), statuses)
        policy = base.policies[0]
        gateway = replace(base.gateway, image="registry.example/modelfleet-gateway:1")
        cycle_inputs = replace(
            base,
            gateway=gateway,
            gateway_ready={(policy.namespace, policy.name): pods_ready},
            budget_usage={},
        )
        result = desired(cycle_inputs, cache)
        fresh = desired(cycle_inputs, RenderCache())
        key = ("RoutingPolicy", policy.namespace, policy.name)
        assert result.statuses[key].wire() == fresh.statuses[key].wire()
        ready_of.append(next(c.reason for c in result.statuses[key].status.conditions))
        statuses = {(ref[0],): update.status for ref, update in result.statuses.items()}
    assert ready_of == [
        "ConfigPublished",
        "ConfigPublished",
        "GatewayNotRunning",
        "GatewayNotRunning",
        "ConfigPublished",
    ]
