"""Budgets, pure: periods that reset at local midnight (DST and months included), spend from
what was used, states and their Events, what the gateway does per key, last known states
kept while the spend cannot be read, and the routes' budget companions."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy, RoutingPolicyStatus
from modelfleet.observe.usage import Usage, UsageKey
from modelfleet.plan import budgets
from modelfleet.plan.billing import usage_lines
from modelfleet.plan.budgets import (
    BLOCKED,
    DEGRADED,
    SOFT,
    WITHIN,
    gates,
    money,
    period_bounds,
    plan_budgets,
    with_budget_companions,
)
from modelfleet.plan.routing.planner import plan_routing

NY, SANTIAGO, SHANGHAI = "America/New_York", "America/Santiago", "Asia/Shanghai"


def local(zone: str, *fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold)


# -- periods -----------------------------------------------------------------------------


def test_a_day_begins_at_local_midnight():
    start, end = period_bounds(local(SHANGHAI, 2026, 11, 27, 15, 30), "day", SHANGHAI)
    assert start == local(SHANGHAI, 2026, 11, 27) and end == local(SHANGHAI, 2026, 11, 28)
    assert start.astimezone(UTC) == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "hours"),
    [((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 6, 1), 24)],
)
def test_days_around_dst_changes_are_23_or_25_hours(day, hours):
    start, end = period_bounds(local(NY, *day, 12), "day", NY)
    assert start == local(NY, *day)
    assert (end - start) == timedelta(hours=hours)


def test_a_midnight_in_a_spring_forward_gap_begins_the_day_at_the_gap_end():
    # Santiago skipped from 00:00 to 01:00 on 2024-09-08.
    start, end = period_bounds(local(SANTIAGO, 2024, 9, 8, 10), "day", SANTIAGO)
    assert start.astimezone(ZoneInfo(SANTIAGO)).hour == 1
    assert start == datetime(2024, 9, 8, 4, 0, tzinfo=UTC)
    assert end - start == timedelta(hours=23)


def test_a_day_that_falls_back_at_midnight_has_25_hours():
    # Santiago went from 2024-04-07 00:00 back to 2024-04-06 23:00.
    second_2330 = local(SANTIAGO, 2024, 4, 6, 23, 30, fold=1)
    start, end = period_bounds(second_2330, "day", SANTIAGO)
    assert start == local(SANTIAGO, 2024, 4, 6) and end - start == timedelta(hours=25)
    assert second_2330 < end


@pytest.mark.parametrize(
    ("now", "first", "following"),
    [
        ((2024, 2, 29, 23, 59), (2024, 2, 1), (2024, 3, 1)),
        ((2026, 12, 31, 23, 0), (2026, 12, 1), (2027, 1, 1)),
        ((2027, 1, 1, 0, 0), (2027, 1, 1), (2027, 2, 1)),
        ((2026, 3, 20, 8, 0), (2026, 3, 1), (2026, 4, 1)),
    ],
)
def test_a_month_begins_at_midnight_of_the_first(now, first, following):
    start, end = period_bounds(local(NY, *now), "month", NY)
    assert (start, end) == (local(NY, *first), local(NY, *following))


def test_march_in_new_york_is_an_hour_short():
    start, end = period_bounds(local(NY, 2026, 3, 15), "month", NY)
    assert end - start == timedelta(days=31, hours=-1)


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from([NY, SANTIAGO, SHANGHAI, "Europe/London", "Australia/Lord_Howe", "UTC"])


@settings(max_examples=300, deadline=None)
@given(
    nows=st.lists(instants, min_size=1, max_size=8),
    zone=zones,
    period=st.sampled_from(["day", "month"]),
)
def test_remembered_periods_are_the_computed_ones(nows, zone, period):
    """period_bounds remembers each local day's bounds: asked again (the same day, an
    instant in a DST gap's day, the day after) it answers what a fresh computation does."""
    asked = [
        moment
        for now in nows
        for moment in (now, now + timedelta(hours=1), now + timedelta(days=1), now)
    ]
    fresh = []
    for moment in asked:
        budgets._BOUNDS.clear()
        fresh.append(period_bounds(moment, period, zone))
    budgets._BOUNDS.clear()
    assert [period_bounds(moment, period, zone) for moment in asked] == fresh
    assert [period_bounds(moment, period, zone) for moment in reversed(asked)] == fresh[::-1]


@settings(max_examples=300, deadline=None)
@given(now=instants, zone=zones, period=st.sampled_from(["day", "month"]))
def test_periods_tile_time(now, zone, period):
    """Every instant lies in exactly one period; periods follow each other without a gap;
    each begins at a local midnight, or at the end of the DST gap that swallowed it."""
    start, end = period_bounds(now, period, zone)
    assert start <= now < end
    assert period_bounds(start, period, zone) == (start, end)
    assert period_bounds(end, period, zone)[0] == end
    assert period_bounds(end - timedelta(microseconds=1), period, zone) == (start, end)
    wall = start.astimezone(ZoneInfo(zone))
    assert wall.minute == 0 and wall.hour in (0, 1)  # 1: the gap ended at 01:00
    if period == "month":
        assert wall.day == 1


# -- states ------------------------------------------------------------------------------


NOW = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
POOL = ModelPool.model_validate(
    {
        "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "gpuBudget": 8,
            "timezone": SHANGHAI,
            "variants": [
                {
                    "name": "big",
                    "model": "big",
                    "gpusPerReplica": 4,
                    "replicas": {"min": 1, "max": 1},
                    "onDemandPrice": {"perRequest": 0.1, "perThousandCompletionTokens": 1.0},
                },
                {
                    "name": "small",
                    "model": "small",
                    "gpusPerReplica": 1,
                    "replicas": {"min": 1, "max": 1},
                    "onDemandPrice": {"perRequest": 0.01},
                },
                {
                    "name": "free",
                    "model": "free",
                    "gpusPerReplica": 1,
                    "replicas": {"min": 1, "max": 1},
                },
            ],
        },
    }
)
KEYS = [
    ApiKey(id="app", key="sk-a", tenant="acme"),
    ApiKey(id="batch", key="sk-b", tenant="acme"),
    ApiKey(id="web", key="sk-c", tenant="globex"),
]


def policy(*budgets: dict, status: dict | None = None, routes: list | None = None) -> RoutingPolicy:
    body = {
        "metadata": {"name": "chat", "namespace": "llm"},
        "spec": {
            "pool": "chat",
            "gateway": {"configMap": "gw", "apiKeySecret": "keys"},
            "routes": routes
            or [
                {
                    "name": "chat",
                    "match": {"taskType": ["chat"]},
                    "backends": [
                        {"variant": "big", "weight": 60},
                        {"variant": "small", "weight": 40},
                    ],
                }
            ],
            "budgets": list(budgets),
        },
    }
    model = RoutingPolicy.model_validate(body)
    if status is not None:
        model = model.model_copy(update={"status": RoutingPolicyStatus.model_validate(status)})
    return model


def acme(period="day", amount=10.0, **more) -> dict:
    return {"tenant": "acme", "period": period, "amount": amount, **more}


def used(*rows: tuple[str, str, str, float]) -> dict:
    return {UsageKey(t, k, v): Usage(n) for t, k, v, n in rows}


def plan(subject: RoutingPolicy, by_period=None, error=None, now=NOW, reservations=()):
    return plan_budgets(subject, POOL, list(reservations), now, by_period, error)


@pytest.mark.parametrize(
    ("requests", "state"),
    [(50, WITHIN), (80, SOFT), (99, SOFT), (100, BLOCKED), (150, BLOCKED)],
)
def test_spend_against_amount_and_soft_limit(requests, state):
    result = plan(policy(acme()), {"day": used(("acme", "app", "big", requests))})
    (only,) = result.states
    assert only.spend == pytest.approx(requests * 0.1)
    assert only.state == state
    assert only.period_start == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    assert only.resets_at == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert result.condition.status == "True"


def test_a_tenants_budget_counts_all_its_keys_and_variants_a_keys_only_its_own():
    usage = used(
        ("acme", "app", "big", 30),  # 3.00
        ("acme", "batch", "small", 100),  # 1.00
        ("acme", "app", "free", 1000),  # free
        ("globex", "web", "big", 500),  # someone else
    )
    result = plan(policy(acme(), acme(keyId="batch", amount=0.5)), {"day": usage})
    tenant, key = result.states
    assert tenant.spend == pytest.approx(4.0)
    assert dict(tenant.spend_by_variant) == pytest.approx({"big": 3.0, "small": 1.0})
    assert key.spend == pytest.approx(1.0) and key.state == BLOCKED
    assert gates(result, KEYS).keys() == {"batch"}


def test_block_wins_over_degrade_and_reaches_every_key_of_the_tenant():
    usage = used(("acme", "app", "big", 200))
    result = plan(
        policy(acme(action="degrade"), acme(period="month", amount=15, action="block")),
        {"day": usage, "month": usage},
    )
    assert [s.state for s in result.states] == [DEGRADED, BLOCKED]
    found = gates(result, KEYS)
    assert {k: g.action for k, g in found.items()} == {"app": "block", "batch": "block"}
    assert "month budget of tenant acme (15 USD) is spent" in found["app"].message
    assert "It resets at 2026-11-30T16:00:00Z" in found["app"].message


def test_crossing_a_threshold_is_an_event_once():
    first = plan(policy(acme()), {"day": used(("acme", "app", "big", 85))})
    assert [(n.type, n.reason) for n in first.notices] == [("Warning", "BudgetSoftLimitReached")]
    again = policy(acme(), status=_status(first))
    second = plan(again, {"day": used(("acme", "app", "big", 90))})
    assert second.notices == ()
    assert second.states[0].last_transition_time == first.states[0].last_transition_time
    third = plan(again, {"day": used(("acme", "app", "big", 120))}, now=NOW + timedelta(minutes=5))
    assert [(n.type, n.reason) for n in third.notices] == [("Warning", "BudgetExceeded")]
    assert "429 insufficient_quota until 2026-11-28T00:00:00+08:00" in third.notices[0].message


def test_the_next_day_resets_a_blocked_tenant():
    blocked = plan(policy(acme()), {"day": used(("acme", "app", "big", 120))})
    assert blocked.states[0].state == BLOCKED
    tomorrow = NOW + timedelta(hours=10)  # 00:00 in Shanghai is 16:00 UTC
    fresh = plan(
        policy(acme(), status=_status(blocked)),
        {"day": used(("acme", "app", "big", 2))},
        now=tomorrow,
    )
    assert fresh.states[0].state == WITHIN
    assert fresh.states[0].period_start == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert [(n.type, n.reason) for n in fresh.notices] == [("Normal", "BudgetReset")]
    assert gates(fresh, KEYS) == {}


def test_without_spend_the_last_known_states_stay():
    blocked = plan(policy(acme()), {"day": used(("acme", "app", "big", 120))})
    remembered = policy(acme(), acme(period="month", amount=1000), status=_status(blocked))
    blind = plan(remembered, None, "Prometheus at http://p:9090: cannot connect (refused)")
    known, new = blind.states
    assert known.state == BLOCKED and known.spend == pytest.approx(12.0)
    assert "stays Blocked" in known.message
    assert new.state == WITHIN and new.spend is None and "not enforced" in new.message
    assert blind.condition.status == "False" and blind.condition.reason == "PrometheusUnavailable"
    assert "cannot connect" in blind.condition.message
    assert blind.notices == ()
    assert gates(blind, KEYS).keys() == {"app", "batch"}
    # Even past the reset: nobody is unblocked blind.
    later = plan(remembered, None, "down", now=NOW + timedelta(days=1))
    assert later.states[0].state == BLOCKED


def test_a_reservation_prices_its_tenants_use_of_its_variant():
    reserved = Reservation.model_validate(
        {
            "metadata": {"name": "acme-big", "namespace": "llm"},
            "spec": {
                "pool": "chat",
                "variant": "big",
                "tenant": "acme",
                "replicas": 1,
                "billing": {"mode": "reserved", "reservedPricePerReplicaHour": 100},
            },
        }
    )
    result = plan(
        policy(acme()), {"day": used(("acme", "app", "big", 500))}, reservations=[reserved]
    )
    assert result.states[0].spend == 0.0, "use of a reserved variant is included"
    euros = reserved.model_copy(
        update={
            "spec": reserved.spec.model_copy(
                update={
                    "billing": reserved.spec.billing.model_copy(
                        update={
                            "mode": "onDemand",
                            "currency": "EUR",
                            "on_demand_price_per_request": 1,
                        }
                    )
                }
            )
        }
    )
    result = plan(policy(acme()), {"day": used(("acme", "app", "big", 5))}, reservations=[euros])
    assert result.states[0].spend == 0.0
    assert "charges in EUR" in result.states[0].message


def test_a_zero_budget_blocks_at_once():
    result = plan(policy(acme(amount=0)), {"day": {}})
    assert result.states[0].state == BLOCKED


def test_no_budgets_no_condition():
    assert plan(policy(), {"day": {}}).condition is None


def _status(result) -> dict:
    return {"budgets": [s.status().model_dump(by_alias=True, mode="json") for s in result.states]}


# -- companions --------------------------------------------------------------------------


def test_budget_companions_take_the_cheaper_backends_before_their_route():
    subject = policy(
        acme(action="degrade"),
        routes=[
            {
                "name": "chat",
                "match": {"taskType": ["chat"]},
                "backends": [
                    {"variant": "big", "weight": 50},
                    {"variant": "small", "weight": 30},
                    {"variant": "free", "weight": 20},
                ],
            },
            {"name": "only-big", "backends": [{"variant": "big", "weight": 100}]},
        ],
    )
    table = with_budget_companions(plan_routing(subject, POOL, {}), POOL)
    names = [r.name for r in table.routes]
    assert names == ["chat-degraded-budget", "chat", "only-big"]
    companion = table.routes[0]
    assert [(b.variant, b.weight) for b in companion.backends] == [("small", 60), ("free", 40)]
    assert companion.match.headers == (("x-modelfleet-budget", "degrade"),)
    assert companion.degraded_from == "chat" and companion.budget
    assert "no backend is cheaper" in table.routes[2].note


def test_small_amounts_keep_their_digits_in_messages():
    assert [money(x) for x in (0, 0.002, 0.0114, 12.5, 2000)] == [
        "0.00",
        "0.002",
        "0.011",
        "12.50",
        "2000.00",
    ]


def _hybrid(tenant: str, variant: str, included: float) -> Reservation:
    return Reservation.model_validate(
        {
            "metadata": {"name": f"{tenant}-{variant}", "namespace": "llm"},
            "spec": {
                "pool": "chat",
                "variant": variant,
                "tenant": tenant,
                "replicas": 1,
                "billing": {
                    "mode": "hybrid",
                    "reservedPricePerReplicaHour": 10,
                    "includedRequestsPerReplicaHour": included,
                    "onDemandPricePerRequest": 0.05,
                },
            },
        }
    )


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([("acme", "app"), ("acme", "batch"), ("globex", "web")]),
            st.sampled_from(["big", "small", "free"]),
            st.integers(0, 400),
        ),
        max_size=8,
    ),
    held=st.lists(
        st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["big", "small"])),
        max_size=3,
        unique=True,
    ),
    included=st.sampled_from([0, 5, 20]),  # x 14 held hours: some use is beyond it
    key=st.sampled_from([None, "app", "batch"]),
)
def test_a_budget_spends_what_its_tenant_owes_of_the_whole_bill(rows, held, included, key):
    """A budget prices only its tenant's use, yet spends what the whole pool's bill charges
    its tenant (or key): a hybrid Reservation's overage share counts every key's requests."""
    usage = {UsageKey(t, k, v): Usage(n, n * 100, n * 50) for (t, k), v, n in rows}
    reservations = [_hybrid(tenant, variant, included) for tenant, variant in held]
    start, _ = period_bounds(NOW, "day", SHANGHAI)
    whole_bill = usage_lines(POOL, reservations, start, NOW, usage)
    owed = sum(
        line.amount
        for line in whole_bill
        if line.tenant == "acme" and key in (None, line.key_id) and line.currency == "USD"
    )
    budget = acme(amount=10**6, **({"keyId": key} if key else {}))
    result = plan(policy(budget), {"day": usage}, reservations=reservations)
    assert result.states[0].spend == pytest.approx(owed)
