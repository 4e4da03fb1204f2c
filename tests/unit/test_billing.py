from datetime import UTC, datetime, timedelta

import pytest

from modelfleet.api.load import load_resources
from modelfleet.api.reservation import Reservation
from modelfleet.plan.billing import pool_lines, reservation_lines, totals_by

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=10)


def reservation(mode, name="r", replicas=2, window=None, **prices) -> Reservation:
    spec = {
        "pool": "p",
        "variant": "v",
        "tenant": name,
        "replicas": replicas,
        "billing": {"mode": mode, **prices},
    }
    if window:
        spec["window"] = window
    return Reservation.model_validate({"metadata": {"name": name}, "spec": spec})


def test_reserved_pays_held_hours_and_requests_are_included():
    lines = reservation_lines(
        [reservation("reserved", reservedPricePerReplicaHour=3.0)], START, END, {("r", "v"): 999}
    )
    assert [(line.item, line.quantity, line.amount) for line in lines] == [
        ("replica-hours", 20.0, 60.0)
    ]


def test_on_demand_pays_per_request_only():
    lines = reservation_lines(
        [reservation("onDemand", onDemandPricePerRequest=0.01)], START, END, {("r", "v"): 250}
    )
    assert [(line.item, line.amount) for line in lines] == [("requests", pytest.approx(2.5))]


def test_hybrid_pays_hours_plus_overage_beyond_the_included_requests():
    hybrid = reservation(
        "hybrid",
        reservedPricePerReplicaHour=1.0,
        onDemandPricePerRequest=0.1,
        includedRequestsPerReplicaHour=10,
    )
    under = reservation_lines([hybrid], START, END, {("r", "v"): 150})
    over = reservation_lines([hybrid], START, END, {("r", "v"): 260})
    assert [line.amount for line in under] == [20.0, 0.0]  # 200 included
    assert [line.amount for line in over] == [20.0, pytest.approx(6.0)]


def test_only_the_window_overlap_is_billed():
    windowed = reservation(
        "reserved",
        reservedPricePerReplicaHour=1.0,
        window={
            "start": (START + timedelta(hours=8)).isoformat(),
            "end": (START + timedelta(hours=30)).isoformat(),
        },
    )
    assert reservation_lines([windowed], START, END, {})[0].quantity == 4.0


def test_pool_cost_and_totals_for_the_samples():
    resources = load_resources(["manifests/samples"])
    chat = resources.pools[0]
    lines = pool_lines(chat, {"qwen3-235b": 10, "qwen3-7b": 4})
    lines += reservation_lines(
        resources.reservations, START, END, {("fin-risk", "qwen3-30b-moe"): 1}
    )
    by_mode = totals_by(lines, "mode")
    assert by_mode[("pool",)] == pytest.approx(10 * 78.4 + 4 * 2.1)
    assert by_mode[("hybrid",)] == pytest.approx(5 * 10 * 8.5)


def test_a_tenants_gateway_requests_are_split_over_its_reserved_variants():
    from modelfleet.plan.billing import requests_by_reservation

    first = reservation("onDemand", name="a", onDemandPricePerRequest=0.01)
    second = Reservation.model_validate(
        {
            "metadata": {"name": "b"},
            "spec": {**first.spec.model_dump(by_alias=True), "variant": "w"},
        }
    )
    split = requests_by_reservation([first, second], {"a": 100.0, "nobody": 5.0})
    assert split == {("a", "v"): 50.0, ("a", "w"): 50.0}
