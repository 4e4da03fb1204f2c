"""The incremental gateway render gives the bytes of a full render, whatever changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.keys import ApiKey
from modelfleet.api.load import load_resources
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.observe.usage import Usage, UsageKey
from modelfleet.render.desired import desired
from modelfleet.render.envoy.parts import PartWriter
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import previous_from_plan, previous_from_status

SAMPLES = load_resources(["manifests/samples"])
POOL = SAMPLES.pools[0]
POLICY = SAMPLES.policies[0]
VARIANTS = [v.name for v in POOL.spec.variants]
NOW = datetime(2026, 11, 30, 6, tzinfo=UTC)
KEYS = (
    ApiKey("web", "sk-cache-web-0001", "consumer"),
    ApiKey("risk", "sk-cache-risk-0002", "fin-risk"),
    # The samples' budgets: research degrades past 2000 a month, scraper blocks past 50 a day.
    ApiKey("lab", "sk-cache-lab-0003", "research"),
    ApiKey("bot", "sk-cache-bot-0004", "scraper"),
)
# What spends each budget on the 235B (its on-demand price in the samples).
OVER = {
    "research": ("month", UsageKey("research", "lab", "qwen3-235b"), Usage(10, 10**9, 0)),
    "scraper": ("day", UsageKey("scraper", "bot", "qwen3-235b"), Usage(10**5, 0, 0)),
}


def observation() -> st.SearchStrategy[VariantObservation]:
    return st.builds(
        VariantObservation,
        ready_replicas=st.sampled_from([None, 0, 1, 5]),
        waiting=st.sampled_from([None, 0.0, 50.0, 150.0]),
        running=st.just(10.0),
        qps=st.sampled_from([None, 0.5, 40.0]),
        p99_latency_seconds=st.sampled_from([None, 0.5, 30.0]),
        p99_ttft_seconds=st.sampled_from([None, 0.1, 5.0]),
        sampled_at=st.just(NOW),
    )


def cycle() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "observed": st.fixed_dictionaries({v: observation() for v in VARIANTS}),
            # chat-summary's two backends, and a third: the retry goes to the heaviest other.
            "weights": st.lists(st.integers(0, 100), min_size=3, max_size=3).filter(any),
            "keys": st.integers(1, len(KEYS)),
            "port": st.sampled_from([8000, 8001]),
            "over": st.sampled_from([(), ("research",), ("scraper",), ("research", "scraper")]),
        }
    )


# As the operator's parse cache does: the same spec, the same objects.
_PARSED: dict[tuple, tuple] = {}


def resources(weights: tuple[int, ...], port: int) -> tuple:
    if (weights, port) not in _PARSED:
        policy_wire = POLICY.to_wire()
        chat = next(r for r in policy_wire["spec"]["routes"] if r["name"] == "chat-summary")
        chat.pop("fallback", None)
        chat["backends"] = [
            {"variant": variant, "weight": weight}
            for variant, weight in zip(
                ["qwen3-30b-moe", "qwen25-72b", "qwen25-7b"], weights, strict=True
            )
        ]
        pool_wire = POOL.to_wire()
        pool_wire["spec"]["variants"][-1]["port"] = port
        _PARSED[(weights, port)] = (
            type(POLICY).model_validate(policy_wire),
            type(POOL).model_validate(pool_wire),
        )
    return _PARSED[(weights, port)]


def inputs(step: dict, at: datetime, statuses: dict | None = None) -> FleetInputs:
    """`statuses`: the last cycle's, as the operator reads them back (the same objects)."""
    policy, pool = resources(tuple(step["weights"]), step["port"])
    if statuses:
        policy = policy.model_copy(update={"status": statuses.get(("RoutingPolicy",))})
        pool = pool.model_copy(update={"status": statuses.get(("ModelPool",))})
    return FleetInputs(
        now=at,
        pools=[pool],
        policies=[policy],
        observations={
            variant_key(pool.namespace, pool.name, name): obs
            for name, obs in step["observed"].items()
        },
        api_keys={(policy.namespace, policy.name): KEYS[: step["keys"]]},
        budget_usage={(policy.namespace, policy.name): spent(step.get("over", ()))},
        gateway=GatewaySettings(),
    )


def spent(over: tuple[str, ...]) -> dict:
    usage: dict = {"day": {}, "month": {}}
    for tenant in over:
        period, key, used = OVER[tenant]
        usage[period][key] = used
    return usage


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cycle(), min_size=2, max_size=6), st.booleans())
def test_incremental_render_matches_a_full_render(cycles, forgetful):
    cache = RenderCache()
    statuses: dict = {}
    if forgetful:
        # A part store that keeps nothing: every part the cache keeps by key only is made
        # again from its inputs.
        cache.gateways.parts = PartWriter(limit_bytes=0)
    for index, step in enumerate(cycles):
        at = NOW + timedelta(seconds=30 * index)
        reference = desired(inputs(step, at, statuses))
        result = desired(inputs(step, at, statuses), cache)
        assert result.tables == reference.tables
        assert result.workloads == reference.workloads
        assert {k: s.wire() for k, s in result.statuses.items()} == {
            k: s.wire() for k, s in reference.statuses.items()
        }
        assert result.events == reference.events
        for (namespace, name), plan in result.plans.items():
            written = result.statuses[("ModelPool", namespace, name)].status
            assert previous_from_plan(plan) == previous_from_status(written)
        # What the operator reads back next cycle: the statuses it wrote, the same objects.
        statuses = {(ref[0],): update.status for ref, update in result.statuses.items()}
        full, fast = reference.gateways, result.gateways
        assert fast.keys() == full.keys()
        for key, gateway in full.items():
            assert dict(fast[key].files) == dict(gateway.files)
            assert fast[key].config_hash == gateway.config_hash
    assert len(cache.gateways) == 1, "one entry per policy, however many renders"
    assert len(cache.workloads) == 1, "one entry per pool, however many renders"


def test_a_spent_budget_changes_only_the_routes():
    cache = RenderCache()
    step = {"observed": {}, "weights": [80, 20, 0], "keys": 4, "port": 8000}
    within = desired(inputs(step, NOW), cache).gateways
    over = desired(inputs({**step, "over": ("scraper", "research")}, NOW), cache).gateways
    full = desired(inputs({**step, "over": ("scraper", "research")}, NOW)).gateways
    (before,), (after,), (reference,) = within.values(), over.values(), full.values()
    assert dict(after.files) == dict(reference.files)
    assert "insufficient_quota" in after.files["rds.yaml"]
    assert "insufficient_quota" not in before.files["rds.yaml"]
    for name in ("envoy.yaml", "lds.yaml", "cds.yaml"):
        assert before.files.kept(name) is after.files.kept(name), f"{name} was rendered again"


def test_a_weight_change_reuses_the_static_files():
    cache = RenderCache()
    step = {"observed": {}, "weights": [80, 20, 0], "keys": 2, "port": 8000}
    first = desired(inputs(step, NOW), cache).gateways
    moved = desired(inputs({**step, "weights": [60, 40, 0]}, NOW), cache).gateways
    (before,), (after,) = first.values(), moved.values()
    assert before.files["rds.yaml"] != after.files["rds.yaml"]
    for name in ("envoy.yaml", "lds.yaml", "cds.yaml"):
        assert before.files.kept(name) is after.files.kept(name), f"{name} was rendered again"


def test_a_variant_leaving_a_route_rewrites_only_what_it_touches():
    cache = RenderCache()
    step = {"observed": {}, "weights": [80, 20, 0], "keys": 2, "port": 8000}
    first = desired(inputs(step, NOW), cache).gateways
    written = len(cache.gateways.parts)
    unready = {"qwen25-72b": VariantObservation(ready_replicas=0, sampled_at=NOW)}
    moved = desired(inputs({**step, "observed": unready}, NOW), cache).gateways
    reference = desired(inputs({**step, "observed": unready}, NOW)).gateways
    (before,), (after,), (full,) = first.values(), moved.values(), reference.values()
    assert dict(after.files) == dict(full.files)
    assert after.files["rds.yaml"] != before.files["rds.yaml"]
    # The routes that send to the 72B (and the fallback clusters that pair with it) are
    # written again; every other route, the Lua settings and the variants' clusters not.
    new_parts = len(cache.gateways.parts) - written
    assert 0 < new_parts <= 8, f"{new_parts} of {written} parts written again"


def test_unchanged_inputs_give_the_same_files_and_a_failed_render_leaves_nothing_stale(
    monkeypatch,
):
    import pytest

    from modelfleet.render import gateway_cache

    cache = RenderCache()
    step = {"observed": {}, "weights": [80, 20, 0], "keys": 2, "port": 8000}
    first = desired(inputs(step, NOW), cache).gateways
    again = desired(inputs(step, NOW), cache).gateways
    (before,), (same,) = first.values(), again.values()
    assert same.files is before.files  # the same table object, specs and settings
    moved = {**step, "weights": [50, 30, 20]}
    real = gateway_cache.routes_template

    def broken(*args, **kwargs):
        raise RuntimeError("the template broke")

    monkeypatch.setattr(gateway_cache, "routes_template", broken)
    with pytest.raises(RuntimeError):
        desired(inputs(moved, NOW), cache)
    monkeypatch.setattr(gateway_cache, "routes_template", real)
    (after,) = desired(inputs(moved, NOW), cache).gateways.values()
    (reference,) = desired(inputs(moved, NOW)).gateways.values()
    assert dict(after.files) == dict(reference.files)
    assert dict(after.files) != dict(before.files)
