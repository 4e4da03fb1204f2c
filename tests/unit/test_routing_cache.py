"""The routing cache gives plan_routing's table, and the same table object while nothing
routing reads has changed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.load import load_resources
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.routing.planner import plan_routing, previous_weights
from modelfleet.render.routing_cache import RoutingCache
from modelfleet.render.status import routes_status

SAMPLES = load_resources(["manifests/samples"])
POOL = SAMPLES.pools[0]
POLICY = SAMPLES.policies[0]
VARIANTS = [v.name for v in POOL.spec.variants]
NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)


def observation() -> st.SearchStrategy[VariantObservation]:
    p99 = st.sampled_from([None, 0.2, 1.5, 9.0, 40.0])
    return st.builds(
        VariantObservation,
        ready_replicas=st.sampled_from([None, 0, 1, 5]),
        waiting=st.sampled_from([None, 0.0, 50.0, 150.0]),
        running=st.sampled_from([None, 10.0]),
        qps=st.sampled_from([None, 0.5, 40.0]),
        p99_latency_seconds=p99,
        p99_ttft_seconds=p99,
        error_rate=st.sampled_from([None, 0.0, 0.1]),
        sampled_at=st.sampled_from([NOW, NOW - timedelta(seconds=20)]),
    )


def observed(values: dict[str, VariantObservation]) -> dict[str, VariantObservation]:
    return {variant_key(POOL.namespace, POOL.name, name): obs for name, obs in values.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.fixed_dictionaries({v: observation() for v in VARIANTS}), min_size=2, max_size=8)
)
def test_the_cached_table_is_the_planned_table(cycles):
    cache = RoutingCache()
    policy = POLICY
    for values in cycles:
        observations = observed(values)
        previous = previous_weights(policy)
        cached = cache.table(policy, POOL, observations, previous)
        assert cached == plan_routing(policy, POOL, observations, previous)
        # As the operator does: the status it wrote carries this cycle's weights to the next.
        policy = policy.model_copy(update={"status": routes_status(cached)})
    assert len(cache) == 1


def test_a_new_sample_of_the_same_values_gives_the_same_table():
    cache = RoutingCache()
    values = {v: VariantObservation(ready_replicas=2, waiting=3.0, qps=5.0) for v in VARIANTS}
    first = cache.table(POLICY, POOL, observed(values), {})
    # What routing does not read: the sample time, running requests, the error rate.
    later = {
        v: replace(obs, sampled_at=NOW, running=7.0, error_rate=0.01) for v, obs in values.items()
    }
    assert cache.table(POLICY, POOL, observed(later), {}) is first
    lost = {**later, VARIANTS[0]: replace(later[VARIANTS[0]], ready_replicas=0)}
    moved = cache.table(POLICY, POOL, observed(lost), {})
    assert moved is not first
    assert moved == plan_routing(POLICY, POOL, observed(lost), {})


def test_a_new_spec_is_planned_again():
    cache = RoutingCache()
    values = observed({v: VariantObservation(ready_replicas=1) for v in VARIANTS})
    first = cache.table(POLICY, POOL, values, {})
    # A new generation of the policy: a new spec object, even with equal content.
    edited = POLICY.model_copy(update={"spec": POLICY.spec.model_copy(deep=True)})
    again = cache.table(edited, POOL, values, {})
    assert again is not first and again == first
    cache.forget(POLICY.namespace, POLICY.name)
    assert len(cache) == 0


def test_moved_numbers_that_route_the_same_give_the_same_table():
    cache = RoutingCache()
    values = {v: VariantObservation(ready_replicas=2, waiting=3.0, qps=5.0) for v in VARIANTS}
    first = cache.table(POLICY, POOL, observed(values), {})
    # Routing reads the QPS, and plans again; the routes and weights come out the same.
    busier = {v: replace(obs, qps=6.0) for v, obs in values.items()}
    assert plan_routing(POLICY, POOL, observed(busier), {}) == first
    assert cache.table(POLICY, POOL, observed(busier), {}) is first
