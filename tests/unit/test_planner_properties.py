"""Properties of the planner over generated pools, observations and previous plans."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.plan.scaling.types import PreviousPlan, PreviousVariant, Recommendation

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@st.composite
def variants(draw, index: int):
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(lo, lo + 20))
    step = st.none() | st.integers(1, 5)
    return {
        "name": f"v{index}",
        "model": f"m{index}",
        "gpusPerReplica": draw(st.sampled_from([1, 2, 4, 8])),
        "priority": draw(st.integers(0, 3)),
        "replicas": {"min": lo, "max": hi},
        "schedules": [
            {
                "name": "day",
                "start": "0 8 * * *",
                "end": "0 20 * * *",
                "replicas": draw(st.integers(lo, hi)),
            }
        ],
        "queue": {
            "targetPerReplica": draw(st.sampled_from([1, 5, 10, 32])),
            "scaleUp": {
                "maxStep": draw(step),
                "stabilizationSeconds": draw(st.sampled_from([0, 60, 300])),
            },
            "scaleDown": {
                "maxStep": draw(step),
                "stabilizationSeconds": draw(st.sampled_from([0, 60, 300])),
            },
        },
    }


@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 4))
    specs = [draw(variants(i)) for i in range(count)]
    pool = ModelPool.model_validate(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"gpuBudget": draw(st.integers(0, 200)), "variants": specs},
        }
    )
    reservations = [
        Reservation.model_validate(
            {
                "metadata": {"name": f"r{i}", "namespace": "ns"},
                "spec": {
                    "pool": "p",
                    "variant": f"v{draw(st.integers(0, count - 1))}",
                    "tenant": "t",
                    "replicas": draw(st.integers(1, 6)),
                    "billing": {"mode": "reserved", "reservedPricePerReplicaHour": 1},
                },
            }
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    now = NOW.replace(hour=draw(st.integers(0, 23)))
    observations = {}
    previous = {}
    for spec in specs:
        if draw(st.booleans()):
            observations[variant_key("ns", "p", spec["name"])] = VariantObservation(
                ready_replicas=draw(st.integers(0, 30)),
                running=draw(st.integers(0, 300)),
                waiting=draw(st.integers(0, 300)),
                sampled_at=now - timedelta(seconds=draw(st.sampled_from([0, 10, 500]))),
            )
        if draw(st.booleans()):
            history = tuple(
                Recommendation(now - timedelta(seconds=s), draw(st.integers(0, 30)))
                for s in (240, 120, 30)
            )
            previous[spec["name"]] = PreviousVariant(draw(st.integers(0, 30)), history)
    return (
        pool,
        reservations,
        observations,
        PreviousPlan(now - timedelta(seconds=30), previous),
        now,
    )


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_never_below_floor_never_above_max(scenario):
    pool, reservations, observations, previous, now = scenario
    plan = plan_pool(pool, reservations, observations, now, previous)
    for variant, spec in zip(plan.variants, pool.spec.variants, strict=True):
        assert variant.floor <= variant.desired_replicas <= spec.replicas.max
        assert variant.desired_replicas >= spec.replicas.min


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_within_budget_unless_overcommitted(scenario):
    pool, reservations, observations, previous, now = scenario
    plan = plan_pool(pool, reservations, observations, now, previous)
    overcommitted = plan.condition("Overcommitted").status == "True"
    assert plan.gpus_planned <= pool.spec.gpu_budget or overcommitted
    if overcommitted:  # only when nothing is left to cut
        assert all(v.desired_replicas == v.floor for v in plan.variants)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_decision_has_a_known_reason(scenario):
    pool, reservations, observations, previous, now = scenario
    plan = plan_pool(pool, reservations, observations, now, previous)
    for variant in plan.variants:
        assert variant.reason in {
            "schedule",
            "queue",
            "reservation",
            "min",
            "max",
            "budget",
            "hold",
            "stabilizing",
        }
        assert variant.message


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_step_limits_hold_unless_a_floor_or_max_forces_more(scenario):
    pool, reservations, observations, previous, now = scenario
    plan = plan_pool(pool, reservations, observations, now, previous)
    for variant, spec in zip(plan.variants, pool.spec.variants, strict=True):
        before = previous.variants.get(variant.name)
        if before is None or variant.reason == "budget":
            continue
        change = variant.desired_replicas - before.desired_replicas
        up, down = spec.queue.scale_up.max_step, spec.queue.scale_down.max_step
        if change > 0 and up is not None and variant.desired_replicas > variant.floor:
            assert change <= up
        if change < 0 and down is not None and variant.desired_replicas < spec.replicas.max:
            assert -change <= down


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.integers(1, 500))
def test_monotone_in_queue_depth(scenario, extra):
    pool, reservations, observations, previous, now = scenario
    name = pool.spec.variants[0].name
    key = variant_key("ns", "p", name)
    base = VariantObservation(ready_replicas=3, running=10, waiting=5, sampled_at=now)
    deeper = VariantObservation(ready_replicas=3, running=10, waiting=5 + extra, sampled_at=now)
    low = plan_pool(pool, reservations, {**observations, key: base}, now, previous)
    high = plan_pool(pool, reservations, {**observations, key: deeper}, now, previous)
    assert high.variants[0].desired_replicas >= low.variants[0].desired_replicas
    assert (
        high.gpus_planned >= low.gpus_planned or high.condition("CapacityLimited").status == "True"
    )
