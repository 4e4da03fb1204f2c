"""The billing ledger: everyone pays for what they use (on demand, or by their
Reservation on the variant), held hours by Reservation, the pool by its replicas."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.api.load import load_resources
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.observe.usage import Usage, UsageKey
from modelfleet.plan.billing import (
    ledger_lines,
    pool_lines,
    reference_price,
    reservation_hours_lines,
    totals_by,
    usage_lines,
)

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=10)


def pool(**prices) -> ModelPool:
    """Variants v and w; `prices` by variant name (onDemandPrice)."""
    variants = []
    for name in ("v", "w"):
        variant = {
            "name": name,
            "model": name,
            "gpusPerReplica": 1,
            "replicas": {"min": 0, "max": 1},
        }
        if name in prices:
            variant["onDemandPrice"] = prices[name]
        variants.append(variant)
    return ModelPool.model_validate(
        {
            "metadata": {"name": "p"},
            "spec": {"gpuBudget": 4, "currency": "EUR", "variants": variants},
        }
    )


def reservation(mode, name="r", replicas=2, window=None, variant="v", **prices) -> Reservation:
    spec = {
        "pool": "p",
        "variant": variant,
        "tenant": name,
        "replicas": replicas,
        "billing": {"mode": mode, **prices},
    }
    if window:
        spec["window"] = window
    return Reservation.model_validate({"metadata": {"name": name}, "spec": spec})


def items(lines):
    return [
        (line.tenant, line.key_id, line.variant, line.mode, line.item, line.amount)
        for line in lines
    ]


def test_a_tenant_without_a_reservation_pays_on_demand_per_request_and_tokens():
    priced = pool(
        v={"perRequest": 0.01, "perThousandPromptTokens": 0.5, "perThousandCompletionTokens": 2.0}
    )
    used = {
        UsageKey("acme", "app", "v"): Usage(10, 4000, 1000),
        UsageKey("acme", "batch", "v"): Usage(1, 0, 500),
        UsageKey("acme", "app", "w"): Usage(5, 100, 100),  # w has no price: free
    }
    lines = usage_lines(priced, [], START, END, used)
    assert items(lines) == [
        ("acme", "app", "v", "onDemand", "requests", pytest.approx(0.1)),
        ("acme", "app", "v", "onDemand", "prompt-tokens", pytest.approx(2.0)),
        ("acme", "app", "v", "onDemand", "completion-tokens", pytest.approx(2.0)),
        ("acme", "batch", "v", "onDemand", "requests", pytest.approx(0.01)),
        ("acme", "batch", "v", "onDemand", "completion-tokens", pytest.approx(1.0)),
    ]
    assert {line.currency for line in lines} == {"EUR"}


def test_reserved_pays_held_hours_and_its_use_is_included():
    held = reservation("reserved", reservedPricePerReplicaHour=3.0)
    assert items(reservation_hours_lines([held], START, END)) == [
        ("r", None, "v", "reserved", "replica-hours", 60.0)
    ]
    priced = pool(v={"perRequest": 1.0})
    assert usage_lines(priced, [held], START, END, {UsageKey("r", "k", "v"): Usage(999)}) == []


def test_a_reserved_tenant_pays_on_demand_on_variants_it_holds_nothing_on():
    held = reservation("reserved", reservedPricePerReplicaHour=3.0)
    priced = pool(w={"perRequest": 0.5})
    lines = usage_lines(priced, [held], START, END, {UsageKey("r", "k", "w"): Usage(4)})
    assert items(lines) == [("r", "k", "w", "onDemand", "requests", 2.0)]


def test_an_on_demand_reservation_uses_its_own_prices_tokens_included():
    theirs = reservation(
        "onDemand",
        onDemandPricePerRequest=0.01,
        onDemandPricePerThousandCompletionTokens=0.2,
    )
    priced = pool(v={"perRequest": 9.0})  # the pool's price does not apply to them
    lines = usage_lines(
        priced, [theirs], START, END, {UsageKey("r", "k", "v"): Usage(250, 7, 5000)}
    )
    assert items(lines) == [
        ("r", "k", "v", "onDemand", "requests", pytest.approx(2.5)),
        ("r", "k", "v", "onDemand", "completion-tokens", pytest.approx(1.0)),
    ]


def test_hybrid_pays_hours_plus_the_overage_and_its_share_of_the_tokens():
    hybrid = reservation(
        "hybrid",
        reservedPricePerReplicaHour=1.0,
        onDemandPricePerRequest=0.1,
        onDemandPricePerThousandPromptTokens=1.0,
        includedRequestsPerReplicaHour=10,
    )
    assert [line.amount for line in reservation_hours_lines([hybrid], START, END)] == [20.0]
    under = usage_lines(pool(), [hybrid], START, END, {UsageKey("r", "k", "v"): Usage(150, 1000)})
    assert under == []  # 200 requests included
    # 260 requests, 60 over the 200 included: 60/260 of the keys' use is billed.
    used = {UsageKey("r", "a", "v"): Usage(130, 2600), UsageKey("r", "b", "v"): Usage(130, 0)}
    over = usage_lines(pool(), [hybrid], START, END, used)
    assert items(over) == [
        ("r", "a", "v", "hybrid", "overage-requests", pytest.approx(3.0)),
        ("r", "a", "v", "hybrid", "overage-prompt-tokens", pytest.approx(0.6)),
        ("r", "b", "v", "hybrid", "overage-requests", pytest.approx(3.0)),
    ]


def test_only_the_window_overlap_is_held():
    windowed = reservation(
        "reserved",
        reservedPricePerReplicaHour=1.0,
        window={
            "start": (START + timedelta(hours=8)).isoformat(),
            "end": (START + timedelta(hours=30)).isoformat(),
        },
    )
    assert reservation_hours_lines([windowed], START, END)[0].quantity == 4.0


def test_a_tenants_use_is_split_over_its_reservations_on_the_variant():
    first = reservation("onDemand", name="a", onDemandPricePerRequest=0.01)
    second = Reservation.model_validate(
        {"metadata": {"name": "b"}, "spec": {**first.spec.model_dump(by_alias=True), "replicas": 1}}
    )
    lines = usage_lines(pool(), [first, second], START, END, {UsageKey("a", "k", "v"): Usage(100)})
    assert [line.quantity for line in lines] == [50.0, 50.0]


def test_the_ledger_of_the_samples():
    resources = load_resources(["manifests/samples"])
    chat = resources.pools[0]
    used = {
        UsageKey("fin-risk", "batch", "qwen3-30b-moe"): Usage(1),  # within its hybrid
        UsageKey("web", "app", "qwen3-235b"): Usage(100, 200_000, 50_000),  # no Reservation
    }
    lines = ledger_lines(
        chat, resources.reservations, {"qwen3-235b": 10, "qwen25-7b": 4}, START, END, used
    )
    by_mode = totals_by(lines, "mode")
    assert by_mode[("pool",)] == pytest.approx(10 * 78.4 + 4 * 2.1)
    assert by_mode[("hybrid",)] == pytest.approx(5 * 10 * 8.5)
    price = chat.spec.variant("qwen3-235b").on_demand_price
    assert by_mode[("onDemand",)] == pytest.approx(price.charge(100, 200_000, 50_000))
    assert by_mode[("onDemand",)] > 0, (
        "the samples price the 235B for tenants without a Reservation"
    )


def test_pool_lines_are_in_the_pools_currency():
    assert {line.currency for line in pool_lines(pool(), {"v": 1.0})} == {"EUR"}


def test_cheaper_compares_the_on_demand_price_of_a_reference_request():
    priced = pool(v={"perThousandCompletionTokens": 1.0}, w={"perRequest": 0.5})
    assert reference_price(priced, "w") < reference_price(priced, "v")


usages = st.builds(
    Usage,
    st.integers(0, 10_000).map(float),
    st.integers(0, 10**7).map(float),
    st.integers(0, 10**7).map(float),
)


@settings(max_examples=150, deadline=None)
@given(a=usages, b=usages)
def test_on_demand_charges_add_up_and_split_by_key(a, b):
    """Billing two keys apart or as one gives the same total; nothing is negative."""
    priced = pool(
        v={"perRequest": 0.003, "perThousandPromptTokens": 0.4, "perThousandCompletionTokens": 1.6}
    )
    apart = usage_lines(
        priced, [], START, END, {UsageKey("t", "a", "v"): a, UsageKey("t", "b", "v"): b}
    )
    together = usage_lines(priced, [], START, END, {UsageKey("t", "a", "v"): a + b})
    assert sum(line.amount for line in apart) == pytest.approx(
        sum(line.amount for line in together), rel=1e-9, abs=1e-9
    )
    assert all(line.amount >= 0 for line in apart)


@settings(max_examples=150, deadline=None)
@given(calls=st.integers(0, 5000), included=st.integers(0, 500))
def test_hybrid_overage_never_exceeds_what_on_demand_would_cost(calls, included):
    hybrid = reservation(
        "hybrid",
        reservedPricePerReplicaHour=1.0,
        onDemandPricePerRequest=0.1,
        includedRequestsPerReplicaHour=included,
    )
    on_demand = reservation("onDemand", onDemandPricePerRequest=0.1)
    used = {UsageKey("r", "k", "v"): Usage(float(calls))}
    overage = sum(line.amount for line in usage_lines(pool(), [hybrid], START, END, used))
    full = sum(line.amount for line in usage_lines(pool(), [on_demand], START, END, used))
    held = 2 * 10 * included
    assert overage == pytest.approx(max(0, calls - held) * 0.1, abs=1e-9)
    assert overage <= full + 1e-9
