"""The routing planner: weights, readiness, cost caps, degrade companions, JSON and hash."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.api.load import InvalidInput, load_resources
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.routing.cost import cost_per_request
from modelfleet.plan.routing.planner import plan_routing
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.plan.routing.weights import apportion
from modelfleet.render.plan_document import routing_entry

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def sample() -> tuple[RoutingPolicy, ModelPool]:
    resources = load_resources([SAMPLES])
    (policy,) = resources.policies
    return policy, resources.pool(policy.namespace, policy.spec.pool)


def sample_obs(**by_variant: VariantObservation) -> dict[str, VariantObservation]:
    return {variant_key("llm", "chat", name.replace("_", "-")): o for name, o in by_variant.items()}


def obs(**fields: Any) -> VariantObservation:
    return VariantObservation(**fields)


def make_pool(variants: list[dict[str, Any]], name: str = "p") -> ModelPool:
    return ModelPool.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "gpuBudget": 100,
                "variants": [
                    {
                        "model": f"m/{v['name']}",
                        "gpusPerReplica": 1,
                        "replicas": {"min": 0, "max": 4},
                    }
                    | v
                    for v in variants
                ],
            },
        }
    )


def make_policy(
    routes: list[dict[str, Any]], degrade: list[dict[str, Any]] | None = None, pool: str = "p"
) -> RoutingPolicy:
    return RoutingPolicy.model_validate(
        {
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {
                "pool": pool,
                "gateway": {"configMap": "gw", "apiKeySecret": "keys"},
                "routes": routes,
                "degrade": degrade or [],
            },
        }
    )


def key(variant: str) -> str:
    return variant_key("ns", "p", variant)


def route(table: RoutingTable, name: str) -> TableRoute:
    return next(r for r in table.routes if r.name == name)


def weights(table: RoutingTable, name: str) -> dict[str, int]:
    return {b.variant: b.weight for b in route(table, name).backends}


# --- weights -------------------------------------------------------------------------------


def test_apportion_rounds_by_largest_remainder_and_earlier_wins_ties() -> None:
    assert apportion([1, 1, 1]) == [34, 33, 33]
    assert apportion([1, 2]) == [33, 67]
    assert apportion([80, 20]) == [80, 20]
    assert apportion([0, 5]) == [0, 100]
    assert apportion([1, 1000]) == [0, 100]
    assert apportion([7, 7, 7, 7, 7, 7]) == [17, 17, 17, 17, 16, 16]


@pytest.mark.parametrize("bad", [[], [0, 0], [3, -1]])
def test_apportion_refuses_weights_without_a_positive_sum(bad: list[int]) -> None:
    with pytest.raises(ValueError, match="positive sum"):
        apportion(bad)


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
def test_apportion_properties(configured: list[int]) -> None:
    shares = apportion(configured)
    assert sum(shares) == 100
    total = sum(configured)
    for weight, share in zip(configured, shares, strict=True):
        assert abs(share - weight * 100 / total) < 1
    for i, wi in enumerate(configured):
        for j, wj in enumerate(configured):
            if wi > wj:
                assert shares[i] >= shares[j]


# --- readiness -----------------------------------------------------------------------------


def test_sample_with_everything_ready_is_the_spec(sample) -> None:
    policy, pool = sample
    table = plan_routing(policy, pool, {})
    assert [r.name for r in table.routes] == [r.name for r in policy.spec.routes]
    assert weights(table, "chat-summary") == {"qwen3-30b-moe": 80, "qwen25-7b": 20}
    assert weights(table, "legal-medical") == {"qwen3-235b": 100}
    assert all(r.note == "" and r.degraded_from is None for r in table.routes)
    assert route(table, "chat-summary").match.task_types == ("chat", "summary")
    assert route(table, "by-model-7b").match.models == ("qwen25-7b", "Qwen/Qwen2.5-7B-Instruct")
    assert (table.namespace, table.policy, table.pool) == ("llm", "chat", "chat")


def test_unready_variant_gets_nothing_and_the_rest_rescale(sample) -> None:
    policy, pool = sample
    table = plan_routing(policy, pool, sample_obs(qwen25_7b=obs(ready_replicas=0)))
    assert weights(table, "chat-summary") == {"qwen3-30b-moe": 100}
    assert "qwen25-7b" in route(table, "chat-summary").note
    assert weights(table, "legal-medical") == {"qwen3-235b": 100}


def test_rescaling_three_backends_when_one_is_down() -> None:
    pool = make_pool([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    policy = make_policy(
        [
            {
                "name": "r",
                "backends": [
                    {"variant": "a", "weight": 70},
                    {"variant": "b", "weight": 20},
                    {"variant": "c", "weight": 10},
                ],
            }
        ]
    )
    table = plan_routing(policy, pool, {key("a"): obs(ready_replicas=0)})
    assert weights(table, "r") == {"b": 67, "c": 33}


def test_route_with_no_ready_backend_keeps_configured_weights_and_says_so() -> None:
    pool = make_pool([{"name": "a"}, {"name": "b"}])
    policy = make_policy(
        [{"name": "r", "backends": [{"variant": "a", "weight": 3}, {"variant": "b", "weight": 1}]}]
    )
    down = {key("a"): obs(ready_replicas=0), key("b"): obs(ready_replicas=0)}
    table = plan_routing(policy, pool, down)
    assert weights(table, "r") == {"a": 75, "b": 25}
    assert "no ready backend" in route(table, "r").note and "503" in route(table, "r").note


def test_no_observation_or_unknown_ready_count_means_ready() -> None:
    pool = make_pool([{"name": "a"}, {"name": "b"}])
    policy = make_policy(
        [{"name": "r", "backends": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 1}]}]
    )
    table = plan_routing(policy, pool, {key("a"): obs(waiting=3.0)})
    assert weights(table, "r") == {"a": 50, "b": 50}
    assert route(table, "r").note == ""


def test_configured_weight_zero_never_gets_traffic() -> None:
    pool = make_pool([{"name": "a"}, {"name": "standby"}])
    policy = make_policy(
        [
            {
                "name": "r",
                "backends": [
                    {"variant": "a", "weight": 100},
                    {"variant": "standby", "weight": 0},
                ],
            }
        ]
    )
    assert weights(plan_routing(policy, pool, {}), "r") == {"a": 100}
    table = plan_routing(policy, pool, {key("a"): obs(ready_replicas=0)})
    assert weights(table, "r") == {"a": 100}
    assert "no ready backend" in route(table, "r").note


def test_a_share_that_rounds_to_zero_is_left_out_and_noted() -> None:
    pool = make_pool([{"name": "a"}, {"name": "b"}])
    policy = make_policy(
        [
            {
                "name": "r",
                "backends": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 999}],
            }
        ]
    )
    table = plan_routing(policy, pool, {})
    assert weights(table, "r") == {"b": 100}
    assert "a" in route(table, "r").note and "too small" in route(table, "r").note


# --- maxCostPerRequest ---------------------------------------------------------------------

# 36/h over 1 request/s = 0.01 per request; 3.6/h = 0.001 per request.
DEAR = {"name": "dear", "costPerReplicaHour": 36.0, "requestsPerSecondPerReplica": 1}
CHEAP = {"name": "cheap", "costPerReplicaHour": 3.6, "requestsPerSecondPerReplica": 1}


def capped_policy(cap: float, *names: str) -> RoutingPolicy:
    backends = [{"variant": n, "weight": 50} for n in names]
    return make_policy([{"name": "r", "backends": backends, "maxCostPerRequest": cap}])


def test_cost_estimate_prefers_observed_throughput() -> None:
    pool = make_pool([DEAR, {"name": "bare", "costPerReplicaHour": 1.0}])
    dear = pool.spec.variant("dear")
    assert cost_per_request(dear, None).per_request == pytest.approx(0.01)
    assert cost_per_request(dear, None).basis == "spec"
    observed = cost_per_request(dear, obs(qps=40.0, ready_replicas=4))
    assert observed.per_request == pytest.approx(0.001) and observed.basis == "observed"
    assert cost_per_request(dear, obs(qps=0.0, ready_replicas=4)).basis == "spec"
    assert cost_per_request(dear, obs(qps=5.0)).basis == "spec"
    assert cost_per_request(pool.spec.variant("bare"), obs(qps=0.0)) is None


def test_cost_cap_drops_the_dear_variant_by_spec_estimate() -> None:
    pool = make_pool([DEAR, CHEAP])
    table = plan_routing(capped_policy(0.005, "dear", "cheap"), pool, {})
    assert weights(table, "r") == {"cheap": 100}
    assert "dear" in route(table, "r").note and "maxCostPerRequest" in route(table, "r").note


def test_cost_cap_uses_observed_qps_per_ready_replica() -> None:
    pool = make_pool([DEAR, CHEAP])
    busy = {key("dear"): obs(qps=30.0, ready_replicas=3)}  # 10 req/s per replica -> 0.001
    assert weights(plan_routing(capped_policy(0.005, "dear", "cheap"), pool, busy), "r") == {
        "dear": 50,
        "cheap": 50,
    }
    idle = {key("cheap"): obs(qps=0.05, ready_replicas=1)}  # 0.001 / 0.05 -> 0.02 per request
    table = plan_routing(capped_policy(0.005, "dear", "cheap"), pool, idle)
    assert weights(table, "r") == {"dear": 100}
    assert "kept the cheapest, dear" in route(table, "r").note
    assert "dropped: cheap (0.02/request, observed)" in route(table, "r").note


def test_cost_exactly_at_the_cap_is_kept() -> None:
    pool = make_pool([DEAR, CHEAP])
    assert weights(plan_routing(capped_policy(0.01, "dear", "cheap"), pool, {}), "r") == {
        "dear": 50,
        "cheap": 50,
    }


def test_unknown_cost_is_kept_and_noted() -> None:
    pool = make_pool([DEAR, {"name": "bare", "costPerReplicaHour": 50.0}])
    table = plan_routing(capped_policy(0.005, "dear", "bare"), pool, {})
    assert weights(table, "r") == {"bare": 100}
    assert "unknown" in route(table, "r").note and "bare" in route(table, "r").note


def test_every_backend_over_the_cap_keeps_the_cheapest() -> None:
    pool = make_pool(
        [DEAR, {"name": "dearer", "costPerReplicaHour": 72.0, "requestsPerSecondPerReplica": 1}]
    )
    table = plan_routing(capped_policy(0.001, "dearer", "dear"), pool, {})
    assert weights(table, "r") == {"dear": 100}
    assert "kept the cheapest" in route(table, "r").note


def test_cost_ties_over_the_cap_go_to_the_earlier_backend() -> None:
    twin = DEAR | {"name": "twin"}
    pool = make_pool([DEAR, twin])
    assert weights(plan_routing(capped_policy(0.001, "twin", "dear"), pool, {}), "r") == {
        "twin": 100
    }


def test_a_ready_variant_over_the_cap_serves_when_the_cheap_one_is_down() -> None:
    pool = make_pool([DEAR, CHEAP])
    table = plan_routing(
        capped_policy(0.005, "dear", "cheap"), pool, {key("cheap"): obs(ready_replicas=0)}
    )
    assert weights(table, "r") == {"dear": 100}
    assert "cheap" in route(table, "r").note and "kept the cheapest" in route(table, "r").note


def test_sample_cost_cap_keeps_the_7b(sample) -> None:
    policy, pool = sample
    idle = sample_obs(qwen25_7b=obs(ready_replicas=4, qps=0.04))  # 2.1/3600/0.01 = 0.058
    table = plan_routing(policy, pool, idle)
    assert weights(table, "code-simple") == {"qwen25-7b": 100}
    assert "kept the cheapest" in route(table, "code-simple").note


# --- degrade -------------------------------------------------------------------------------


def test_degrade_companion_appears_above_the_threshold_before_each_route_using_it(
    sample,
) -> None:
    policy, pool = sample
    table = plan_routing(policy, pool, sample_obs(qwen3_235b=obs(waiting=101.0)))
    names = [r.name for r in table.routes]
    assert names == [
        "legal-medical-degraded-low",
        "legal-medical",
        "chat-summary",
        "code-simple",
        "code-complex",
        "by-model-235b-degraded-low",
        "by-model-235b",
        "by-model-72b",
        "by-model-30b",
        "by-model-7b",
    ]
    companion = route(table, "legal-medical-degraded-low")
    assert companion.degraded_from == "legal-medical"
    assert [(b.variant, b.weight) for b in companion.backends] == [("qwen25-72b", 100)]
    assert companion.match.task_types == ("legal", "medical")
    assert companion.match.headers == (("x-priority", "low"),)
    assert "101" in companion.note
    assert route(table, "by-model-235b-degraded-low").match.models == (
        "qwen3-235b",
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
    )


@pytest.mark.parametrize("waiting", [None, 0.0, 100.0])
def test_no_degrade_companion_at_or_below_the_threshold(sample, waiting) -> None:
    policy, pool = sample
    table = plan_routing(policy, pool, sample_obs(qwen3_235b=obs(waiting=waiting)))
    assert [r.name for r in table.routes] == [r.name for r in policy.spec.routes]


def test_degrade_to_an_unready_fallback_is_still_added_and_noted(sample) -> None:
    policy, pool = sample
    observed = sample_obs(qwen3_235b=obs(waiting=500.0), qwen25_72b=obs(ready_replicas=0))
    companion = route(plan_routing(policy, pool, observed), "legal-medical-degraded-low")
    assert companion.backends[0].variant == "qwen25-72b"
    assert "no ready replica" in companion.note


def test_no_companion_for_a_route_that_no_longer_sends_to_the_variant() -> None:
    pool = make_pool([{"name": "big"}, {"name": "small"}, {"name": "fb"}])
    policy = make_policy(
        [
            {
                "name": "mixed",
                "backends": [
                    {"variant": "big", "weight": 1},
                    {"variant": "small", "weight": 1},
                ],
            }
        ],
        degrade=[{"variant": "big", "waitingAbove": 5, "fallback": "fb"}],
    )
    table = plan_routing(policy, pool, {key("big"): obs(ready_replicas=0, waiting=50.0)})
    assert [r.name for r in table.routes] == ["mixed"]


def test_route_already_matching_another_priority_gets_no_companion() -> None:
    pool = make_pool([{"name": "big"}, {"name": "fb"}])
    degrade = [{"variant": "big", "waitingAbove": 5, "priority": "low", "fallback": "fb"}]
    high = make_policy(
        [
            {
                "name": "vip",
                "match": {"headers": [{"name": "X-Priority", "value": "high"}]},
                "backends": [{"variant": "big", "weight": 1}],
            }
        ],
        degrade,
    )
    table = plan_routing(high, pool, {key("big"): obs(waiting=50.0)})
    assert [r.name for r in table.routes] == ["vip"]
    assert "not applied" in route(table, "vip").note
    low = make_policy(
        [
            {
                "name": "bulk",
                "match": {"headers": [{"name": "x-priority", "value": "low"}]},
                "backends": [{"variant": "big", "weight": 1}],
            }
        ],
        degrade,
    )
    table = plan_routing(low, pool, {key("big"): obs(waiting=50.0)})
    assert route(table, "bulk-degraded-low").match.headers == (("x-priority", "low"),)


def test_two_tripped_rules_with_one_priority_make_one_companion() -> None:
    pool = make_pool([{"name": "a"}, {"name": "b"}, {"name": "fa"}, {"name": "fb"}])
    policy = make_policy(
        [{"name": "r", "backends": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 1}]}],
        degrade=[
            {"variant": "a", "waitingAbove": 1, "fallback": "fa"},
            {"variant": "b", "waitingAbove": 1, "fallback": "fb"},
            {"variant": "b", "waitingAbove": 1, "priority": "batch", "fallback": "fb"},
        ],
    )
    table = plan_routing(policy, pool, {key("a"): obs(waiting=9.0), key("b"): obs(waiting=9.0)})
    assert [r.name for r in table.routes] == ["r-degraded-low", "r-degraded-batch", "r"]
    assert weights(table, "r-degraded-low") == {"fa": 100}
    assert "shadowed" in route(table, "r-degraded-low").note


def test_companion_names_stay_dns_labels() -> None:
    long_name = "r" * 60
    pool = make_pool([{"name": "a"}, {"name": "fb"}])
    policy = make_policy(
        [
            {"name": long_name, "backends": [{"variant": "a", "weight": 1}]},
            {"name": "x", "backends": [{"variant": "a", "weight": 1}]},
        ],
        degrade=[
            {"variant": "a", "waitingAbove": 0, "priority": "Bulk_Jobs.v2", "fallback": "fb"},
            {"variant": "a", "waitingAbove": 0, "priority": "_", "fallback": "fb"},
            {"variant": "a", "waitingAbove": 0, "priority": "low", "fallback": "fb"},
            {"variant": "a", "waitingAbove": 0, "priority": "LOW", "fallback": "fb"},
        ],
    )
    table = plan_routing(policy, pool, {key("a"): obs(waiting=1.0)})
    names = [r.name for r in table.routes]
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names)
    assert len(set(names)) == len(names) == 10
    assert "x-degraded-low" in names
    assert "x-degraded-bulk-jobs-v2" in names
    assert route(table, "x-degraded-bulk-jobs-v2").match.headers == (
        ("x-priority", "Bulk_Jobs.v2"),
    )


# --- input, JSON, hash ---------------------------------------------------------------------


def test_policy_for_another_pool_is_refused_naming_the_field() -> None:
    pool = make_pool([{"name": "a"}])
    policy = make_policy([{"name": "r", "backends": [{"variant": "a", "weight": 1}]}], pool="q")
    with pytest.raises(InvalidInput, match=r"spec\.pool.*no ModelPool 'q'"):
        plan_routing(policy, pool, {})
    wrong_variant = make_policy([{"name": "r", "backends": [{"variant": "zz", "weight": 1}]}])
    with pytest.raises(InvalidInput, match=r"backends\[0\]\.variant.*no variant 'zz'"):
        plan_routing(wrong_variant, pool, {})


def test_table_json_shape(sample) -> None:
    policy, pool = sample
    observed = sample_obs(qwen3_235b=obs(waiting=150.0), qwen25_7b=obs(ready_replicas=0))
    data = routing_entry(plan_routing(policy, pool, observed))
    assert set(data) == {"namespace", "policy", "routes"}
    assert (data["namespace"], data["policy"]) == ("llm", "chat")
    assert json.loads(json.dumps(data)) == data
    first, second = data["routes"][:2]
    assert first == {
        "name": "legal-medical-degraded-low",
        "match": {
            "taskType": ["legal", "medical"],
            "model": [],
            "headers": [{"name": "x-priority", "value": "low"}],
        },
        "backends": [{"variant": "qwen25-72b", "weight": 100}],
        "degradedFrom": "legal-medical",
        "note": first["note"],
    }
    assert second == {
        "name": "legal-medical",
        "match": {"taskType": ["legal", "medical"], "model": [], "headers": []},
        "backends": [{"variant": "qwen3-235b", "weight": 100}],
        "degradedFrom": None,
        "note": None,
    }
    chat = next(r for r in data["routes"] if r["name"] == "chat-summary")
    assert chat["backends"] == [{"variant": "qwen3-30b-moe", "weight": 100}]
    assert "qwen25-7b" in chat["note"]


# --- properties ----------------------------------------------------------------------------

VARIANTS = ("v0", "v1", "v2", "v3")
# Strategies are built once: building them inside the composite re-validates them per example.
VARIANT_COUNT = st.integers(2, len(VARIANTS))
VARIANT_COST = st.fixed_dictionaries(
    {"costPerReplicaHour": st.sampled_from([0.0, 1.8, 3.6, 36.0])},
    optional={"requestsPerSecondPerReplica": st.sampled_from([1.0, 10.0])},
)
ROUTE_COUNT = st.integers(1, 4)
BACKEND_CHOICE = {
    n: st.lists(st.sampled_from(VARIANTS[:n]), min_size=1, max_size=n, unique=True)
    for n in range(2, len(VARIANTS) + 1)
}
WEIGHT = st.integers(0, 30)
COST_CAP = st.sampled_from([None, 0.001, 0.005])
RULE_COUNT = st.integers(0, 3)
WATCHED_AND_FALLBACK = {
    n: st.permutations(VARIANTS[:n]).map(lambda names: names[:2])
    for n in range(2, len(VARIANTS) + 1)
}
THRESHOLD = st.sampled_from([0, 10, 50])
PRIORITY = st.sampled_from(["low", "batch"])
OBSERVATION = st.none() | st.builds(
    VariantObservation,
    ready_replicas=st.none() | st.integers(0, 3),
    waiting=st.none() | st.sampled_from([0.0, 10.0, 11.0, 50.0, 80.0]),
    qps=st.none() | st.sampled_from([0.0, 0.5, 5.0, 50.0]),
)


@st.composite
def fleets(draw) -> tuple[RoutingPolicy, ModelPool, dict[str, VariantObservation]]:
    count = draw(VARIANT_COUNT)
    names = VARIANTS[:count]
    pool = make_pool([{"name": name, **draw(VARIANT_COST)} for name in names])
    routes = []
    for index in range(draw(ROUTE_COUNT)):
        chosen = draw(BACKEND_CHOICE[count])
        backend_weights = [draw(WEIGHT) for _ in chosen]
        if sum(backend_weights) == 0:
            backend_weights[0] = 1  # the CRD refuses a route whose weights are all 0
        spec: dict[str, Any] = {
            "name": f"r{index}",
            "match": {"taskType": [f"t{index}"]},
            "backends": [
                {"variant": v, "weight": w} for v, w in zip(chosen, backend_weights, strict=True)
            ],
        }
        cap = draw(COST_CAP)
        if cap is not None:
            spec["maxCostPerRequest"] = cap
        routes.append(spec)
    degrade = []
    for _ in range(draw(RULE_COUNT)):
        watched, fallback = draw(WATCHED_AND_FALLBACK[count])
        degrade.append(
            {
                "variant": watched,
                "fallback": fallback,
                "waitingAbove": draw(THRESHOLD),
                "priority": draw(PRIORITY),
            }
        )
    observed = {}
    for name in names:
        drawn = draw(OBSERVATION)
        if drawn is not None:
            observed[key(name)] = drawn
    return make_policy(routes, degrade), pool, observed


def is_ready(observed: dict[str, VariantObservation], variant: str) -> bool:
    o = observed.get(key(variant))
    return o is None or o.ready_replicas is None or o.ready_replicas > 0


def spec_route_pairs(policy, table):
    """(spec route, planned route) in spec order; companions are skipped."""
    planned = [r for r in table.routes if r.degraded_from is None]
    return list(zip(policy.spec.routes, planned, strict=True))


FAST = settings(max_examples=150, deadline=None)


@FAST
@given(fleets())
def test_property_weights_sum_to_100_with_positive_shares(fleet) -> None:
    policy, pool, observed = fleet
    for planned in plan_routing(policy, pool, observed).routes:
        assert sum(b.weight for b in planned.backends) == 100
        assert all(b.weight > 0 for b in planned.backends)
        assert len({b.variant for b in planned.backends}) == len(planned.backends)


@FAST
@given(fleets())
def test_property_unready_variants_get_nothing_while_any_backend_is_ready(fleet) -> None:
    policy, pool, observed = fleet
    for spec, planned in spec_route_pairs(policy, plan_routing(policy, pool, observed)):
        positive = [b.variant for b in spec.backends if b.weight > 0]
        if any(is_ready(observed, v) for v in positive):
            assert all(is_ready(observed, b.variant) for b in planned.backends)
        else:
            assert "no ready backend" in planned.note


@FAST
@given(fleets())
def test_property_rescaling_preserves_the_order_of_configured_weights(fleet) -> None:
    policy, pool, observed = fleet
    for spec, planned in spec_route_pairs(policy, plan_routing(policy, pool, observed)):
        share = {b.variant: b.weight for b in planned.backends}
        positive = [b for b in spec.backends if b.weight > 0]
        live = [b for b in positive if is_ready(observed, b.variant)] or positive
        if spec.max_cost_per_request is not None:
            live = [b for b in live if b.variant in share]  # the cap may drop a heavier one
        assert set(share) <= {b.variant for b in live}
        for a in live:
            for b in live:
                if a.weight > b.weight:
                    assert share.get(a.variant, 0) >= share.get(b.variant, 0)


def within_cap(pool: ModelPool, observed, variant: str, cap: float) -> bool | None:
    spec = pool.spec.variant(variant)
    o = observed.get(key(variant))
    per_second = spec.cost_per_replica_hour / 3600
    if o and o.qps and o.ready_replicas:
        return per_second * o.ready_replicas / o.qps <= cap * (1 + 1e-9)
    if spec.requests_per_second_per_replica:
        return per_second / spec.requests_per_second_per_replica <= cap * (1 + 1e-9)
    return None


@FAST
@given(fleets())
def test_property_max_cost_per_request_filters(fleet) -> None:
    policy, pool, observed = fleet
    for spec, planned in spec_route_pairs(policy, plan_routing(policy, pool, observed)):
        cap = spec.max_cost_per_request
        if cap is None:
            continue
        verdicts = [within_cap(pool, observed, b.variant, cap) for b in planned.backends]
        if "kept the cheapest" in planned.note:
            assert verdicts == [False]
        else:
            assert all(v is not False for v in verdicts)
        if None in verdicts:
            assert "unknown" in planned.note


@FAST
@given(fleets())
def test_property_degrade_companions_exactly_above_threshold_before_users(fleet) -> None:
    policy, pool, observed = fleet
    table = plan_routing(policy, pool, observed)
    tripped = [
        rule
        for rule in policy.spec.degrade
        if (o := observed.get(key(rule.variant))) is not None
        and o.waiting is not None
        and o.waiting > rule.waiting_above
    ]
    routes = list(table.routes)
    position = 0
    for spec in policy.spec.routes:
        planned_index = next(i for i, r in enumerate(routes) if r.name == spec.name)
        companions = routes[position:planned_index]
        planned = routes[planned_index]
        sends_to = {b.variant for b in planned.backends}
        expected: dict[str, str] = {}
        for rule in tripped:
            if rule.variant in sends_to:
                expected.setdefault(rule.priority, rule.fallback)
        assert [(c.match.headers[-1][1], c.backends[0].variant) for c in companions] == list(
            expected.items()
        )
        for companion in companions:
            assert companion.degraded_from == spec.name
            assert companion.name == f"{spec.name}-degraded-{companion.match.headers[-1][1]}"
            assert companion.match.headers[-1][0] == "x-priority"
            assert companion.match.task_types == planned.match.task_types
            assert [b.weight for b in companion.backends] == [100]
        position = planned_index + 1
    assert position == len(routes)


@FAST
@given(fleets())
def test_property_planning_is_deterministic(fleet) -> None:
    policy, pool, observed = fleet
    first = plan_routing(policy, pool, observed)
    again = plan_routing(policy, pool, dict(reversed(list(observed.items()))))
    assert first == again
    assert routing_entry(first) == routing_entry(again)
