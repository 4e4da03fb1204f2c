"""Latency-aware weights: a backend missing its route's SLO gives weight, by bounded steps,
to backends with headroom, and gets it back when it recovers; through desired() the shift
is remembered in the RoutingPolicy's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.routing.latency import SHIFT_STEP, shift_weights
from modelfleet.plan.routing.planner import plan_routing, previous_weights
from modelfleet.plan.routing.weights import apportion
from modelfleet.plan.scaling.slo import SloReading
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def make_pool() -> ModelPool:
    return ModelPool.model_validate(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "gpuBudget": 100,
                "variants": [
                    {
                        "name": n,
                        "model": f"m/{n}",
                        "gpusPerReplica": 1,
                        "replicas": {"min": 1, "max": 4},
                    }
                    for n in ("fast", "slow", "other")
                ],
            },
        }
    )


def make_policy(slo: dict[str, float] | None = None) -> RoutingPolicy:
    chat: dict[str, Any] = {
        "name": "chat",
        "match": {"taskType": ["chat"]},
        "backends": [{"variant": "fast", "weight": 50}, {"variant": "slow", "weight": 50}],
    }
    if slo:
        chat["slo"] = slo
    return RoutingPolicy.model_validate(
        {
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {
                "pool": "p",
                "gateway": {"configMap": "gw", "apiKeySecret": "keys"},
                "routes": [chat, {"name": "rest", "backends": [{"variant": "other", "weight": 1}]}],
            },
        }
    )


def obs(e2e: float, qps: float = 10.0) -> VariantObservation:
    return VariantObservation(
        ready_replicas=2,
        running=5,
        waiting=0,
        qps=qps,
        p99_latency_seconds=e2e,
        p99_ttft_seconds=0.1,
        sampled_at=NOW,
    )


def observations(fast: float, slow: float, qps: float = 10.0) -> dict[str, VariantObservation]:
    return {
        variant_key("ns", "p", "fast"): obs(fast, qps),
        variant_key("ns", "p", "slow"): obs(slow, qps),
    }


def chat_weights(table) -> dict[str, int]:
    route = next(r for r in table.routes if r.name == "chat")
    return {b.variant: b.weight for b in route.backends}


SLO = {"e2eSeconds": 20.0}


def test_a_missing_backend_gives_one_step_to_the_one_with_headroom():
    table = plan_routing(make_policy(SLO), make_pool(), observations(fast=8.0, slow=30.0))
    assert chat_weights(table) == {"fast": 50 + SHIFT_STEP, "slow": 50 - SHIFT_STEP}
    note = next(r for r in table.routes if r.name == "chat").note
    assert "moved from slow" in note and "p99 e2e 30 s of 20 s" in note


def test_the_shift_continues_from_last_cycle_and_returns_after_recovery():
    pool, policy = make_pool(), make_policy(SLO)
    previous = {"chat": {"fast": 80, "slow": 20}}
    still_missing = plan_routing(policy, pool, observations(8.0, 30.0), previous)
    assert chat_weights(still_missing) == {"fast": 90, "slow": 10}
    recovered = plan_routing(policy, pool, observations(8.0, 10.0), previous)
    assert chat_weights(recovered) == {"fast": 70, "slow": 30}
    assert (
        "returning toward the configured weights"
        in next(r for r in recovered.routes if r.name == "chat").note
    )


def test_nothing_moves_without_an_slo_headroom_or_enough_requests():
    pool = make_pool()
    assert chat_weights(plan_routing(make_policy(), pool, observations(8.0, 30.0))) == {
        "fast": 50,
        "slow": 50,
    }
    both_miss = plan_routing(make_policy(SLO), pool, observations(25.0, 30.0))
    assert chat_weights(both_miss) == {"fast": 50, "slow": 50}
    # A p99 over a handful of requests (1 req/s for a minute) is not a miss.
    few = plan_routing(make_policy(SLO), pool, observations(8.0, 30.0, qps=1.0))
    assert chat_weights(few) == {"fast": 50, "slow": 50}


def test_when_every_backend_misses_weight_goes_to_one_far_closer_to_the_slo():
    # Long prompts: the small model misses the TTFT however idle (p99 at 3x the SLO), the
    # large one only by its longest prompts (1.2x): the route is served better by the
    # large one, and weight moves to it by the same bounded steps.
    table = plan_routing(make_policy(SLO), make_pool(), observations(fast=24.0, slow=60.0))
    assert chat_weights(table) == {"fast": 50 + SHIFT_STEP, "slow": 50 - SHIFT_STEP}
    note = next(r for r in table.routes if r.name == "chat").note
    assert "every backend misses" in note and "moved from slow" in note
    # Both about as far over: no backend serves the route better, nothing moves.
    table = plan_routing(make_policy(SLO), make_pool(), observations(fast=25.0, slow=30.0))
    assert chat_weights(table) == {"fast": 50, "slow": 50}


def test_desired_remembers_the_shift_in_the_policy_status():
    pool, policy = make_pool(), make_policy(SLO)
    seen = []
    for cycle in range(3):
        result = desired(
            FleetInputs(
                now=NOW + timedelta(seconds=30 * cycle),
                pools=[pool],
                policies=[policy],
                observations=observations(8.0, 30.0),
            )
        )
        status = result.status_of("RoutingPolicy", "ns", "gw")
        policy = policy.model_copy(update={"status": status})
        seen.append(previous_weights(policy)["chat"])
    assert [w["slow"] for w in seen] == [40, 30, 20]


@settings(max_examples=300, deadline=None)
@given(
    configured=st.lists(st.integers(1, 100), min_size=2, max_size=4),
    ratios=st.lists(st.none() | st.floats(0.1, 3.0), min_size=4, max_size=4),
    carried=st.booleans(),
    shifts=st.lists(st.integers(-30, 30), min_size=4, max_size=4),
)
def test_property_weights_keep_their_sum_move_by_bounded_steps_and_stay_non_negative(
    configured, ratios, carried, shifts
):
    base = apportion(configured, 100)
    variants = [f"v{i}" for i in range(len(base))]
    previous = None
    if carried:
        moved = [max(0, b + s) for b, s in zip(base, shifts, strict=False)]
        moved[0] += sum(base) - sum(moved)
        if moved[0] >= 0:
            previous = dict(zip(variants, moved, strict=True))
    readings = {
        v: SloReading(r, f"p99 {r}", 1000.0) if r is not None else None
        for v, r in zip(variants, ratios, strict=False)
    }
    shift = shift_weights(variants, base, previous, readings.get, lambda _: 0.8)
    assert sum(shift.weights) == sum(base)
    assert all(w >= 0 for w in shift.weights)
    start = [previous[v] for v in variants] if previous else base
    assert sum(abs(a - b) for a, b in zip(shift.weights, start, strict=True)) <= 2 * SHIFT_STEP
