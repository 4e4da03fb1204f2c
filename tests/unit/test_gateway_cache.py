"""The incremental gateway render gives the bytes of a full render, whatever changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.keys import ApiKey
from modelfleet.api.load import load_resources
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.render.desired import desired
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.gateway_cache import GatewayRenderCache
from modelfleet.render.inputs import FleetInputs

SAMPLES = load_resources(["manifests/samples"])
POOL = SAMPLES.pools[0]
POLICY = SAMPLES.policies[0]
VARIANTS = [v.name for v in POOL.spec.variants]
NOW = datetime(2026, 11, 30, 6, tzinfo=UTC)
KEYS = (
    ApiKey("web", "sk-cache-web-0001", "consumer"),
    ApiKey("risk", "sk-cache-risk-0002", "fin-risk"),
)


def observation() -> st.SearchStrategy[VariantObservation]:
    return st.builds(
        VariantObservation,
        ready_replicas=st.sampled_from([None, 0, 1, 5]),
        waiting=st.sampled_from([None, 0.0, 50.0, 150.0]),
        running=st.just(10.0),
        qps=st.sampled_from([None, 0.5, 40.0]),
        sampled_at=st.just(NOW),
    )


def cycle() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "observed": st.fixed_dictionaries({v: observation() for v in VARIANTS}),
            "weights": st.lists(st.integers(0, 100), min_size=2, max_size=2).filter(any),
            "keys": st.integers(1, len(KEYS)),
            "port": st.sampled_from([8000, 8001]),
        }
    )


def inputs(step: dict, at: datetime) -> FleetInputs:
    policy_wire = POLICY.to_wire()
    chat = next(r for r in policy_wire["spec"]["routes"] if r["name"] == "chat-summary")
    for backend, weight in zip(chat["backends"], step["weights"], strict=True):
        backend["weight"] = weight
    pool_wire = POOL.to_wire()
    pool_wire["spec"]["variants"][-1]["port"] = step["port"]
    policy = type(POLICY).model_validate(policy_wire)
    pool = type(POOL).model_validate(pool_wire)
    return FleetInputs(
        now=at,
        pools=[pool],
        policies=[policy],
        observations={
            variant_key(pool.namespace, pool.name, name): obs
            for name, obs in step["observed"].items()
        },
        api_keys={(policy.namespace, policy.name): KEYS[: step["keys"]]},
        gateway=GatewaySettings(),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=2, max_size=6))
def test_incremental_render_matches_a_full_render(cycles):
    cache = GatewayRenderCache()
    for index, step in enumerate(cycles):
        at = NOW + timedelta(seconds=30 * index)
        full = desired(inputs(step, at)).gateways
        fast = desired(inputs(step, at), cache).gateways
        assert fast.keys() == full.keys()
        for key, gateway in full.items():
            assert dict(fast[key].files) == dict(gateway.files)
            assert fast[key].config_hash == gateway.config_hash
    assert len(cache) == 1, "one entry per policy, however many renders"


def test_a_weight_change_reuses_the_static_files():
    cache = GatewayRenderCache()
    step = {"observed": {}, "weights": [80, 20], "keys": 2, "port": 8000}
    first = desired(inputs(step, NOW), cache).gateways
    moved = desired(inputs({**step, "weights": [60, 40]}, NOW), cache).gateways
    (before,), (after,) = first.values(), moved.values()
    assert before.files["rds.yaml"] != after.files["rds.yaml"]
    for name in ("envoy.yaml", "lds.yaml", "cds.yaml"):
        assert before.files[name] is after.files[name], f"{name} was rendered again"
