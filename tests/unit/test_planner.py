"""The scaling rule (README, "The scaling rule"), pinned down case by case."""

from datetime import UTC, datetime, timedelta

import pytest

from modelfleet.api.load import load_resources
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.plan.scaling.types import PreviousPlan, PreviousVariant, Recommendation

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 Friday in Asia/Shanghai


def pool(variants, budget=1000, tz="UTC", stale=120) -> ModelPool:
    return ModelPool.model_validate(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "gpuBudget": budget,
                "timezone": tz,
                "metrics": {"staleAfterSeconds": stale},
                "variants": variants,
            },
        }
    )


def variant(name="v", gpus=1, priority=0, lo=1, hi=20, queue=None, schedules=()) -> dict:
    spec = {
        "name": name,
        "model": f"org/{name}",
        "gpusPerReplica": gpus,
        "priority": priority,
        "replicas": {"min": lo, "max": hi},
        "schedules": list(schedules),
    }
    if queue is not None:
        spec["queue"] = queue
    return spec


def reservation(replicas, variant_name="v", name="r", window=None) -> Reservation:
    spec = {
        "pool": "p",
        "variant": variant_name,
        "tenant": "t",
        "replicas": replicas,
        "billing": {"mode": "reserved", "reservedPricePerReplicaHour": 1},
    }
    if window:
        spec["window"] = window
    return Reservation.model_validate({"metadata": {"name": name, "namespace": "ns"}, "spec": spec})


def observe(name="v", at=NOW, **fields) -> dict:
    return {variant_key("ns", "p", name): VariantObservation(sampled_at=at, **fields)}


def previous(desired, name="v", history=(), last=None, at=NOW - timedelta(seconds=30)):
    recs = tuple(Recommendation(t, r) for t, r in history) or (Recommendation(at, desired),)
    return PreviousPlan(at, {name: PreviousVariant(desired, recs, last)})


QUEUE = {"targetPerReplica": 10}


def test_samples_daytime_and_night_counts():
    resources = load_resources(["manifests/samples"])
    chat = resources.pools[0]
    day = plan_pool(
        chat, resources.reservations, {}, datetime.fromisoformat("2026-11-27T10:00:00+08:00")
    )
    night = plan_pool(
        chat, resources.reservations, {}, datetime.fromisoformat("2026-11-28T02:00:00+08:00")
    )
    assert {v.name: (v.desired_replicas, v.reason) for v in day.variants} == {
        "qwen3-235b": (20, "schedule"),
        "qwen25-72b": (2, "min"),
        "qwen3-30b-moe": (50, "schedule"),
        "qwen25-7b": (2, "min"),
    }
    assert {v.name: v.desired_replicas for v in night.variants} == {
        "qwen3-235b": 5,
        "qwen25-72b": 2,
        "qwen3-30b-moe": 10,
        "qwen25-7b": 2,
    }
    assert night.variant("qwen3-30b-moe").floor == 10  # min 10 > the 5 reserved


def test_queue_desired_is_ceil_of_running_plus_waiting_over_target():
    plan = plan_pool(pool([variant(queue=QUEUE)]), [], observe(running=31, waiting=50), NOW)
    assert (plan.variants[0].desired_replicas, plan.variants[0].reason) == (9, "queue")


def test_queue_below_min_gives_min_and_above_max_gives_max():
    p = pool([variant(lo=3, hi=6, queue=QUEUE)])
    low = plan_pool(p, [], observe(running=1, waiting=0), NOW).variants[0]
    high = plan_pool(p, [], observe(running=100, waiting=400), NOW).variants[0]
    assert (low.desired_replicas, low.reason) == (3, "min")
    assert (high.desired_replicas, high.reason) == (6, "max")


@pytest.mark.parametrize(
    "obs",
    [
        {},  # no metrics at all
        observe(ready_replicas=7, running=0, waiting=0, at=NOW - timedelta(seconds=121)),  # stale
        observe(ready_replicas=7),  # ready known but no queue gauges
    ],
)
def test_missing_or_stale_metrics_hold_the_previous_plan(obs):
    p = pool([variant(lo=2, queue=QUEUE)])
    plan = plan_pool(p, [], obs, NOW, previous(7))
    v = plan.variants[0]
    assert (v.desired_replicas, v.reason) == (7, "hold")
    assert plan.condition("MetricsAvailable").status == "False"


def test_hold_never_goes_below_the_floors():
    p = pool([variant(lo=2, queue=QUEUE)])
    obs = observe(ready_replicas=1, at=NOW - timedelta(hours=1), running=0, waiting=0)
    v = plan_pool(p, [reservation(4)], obs, NOW).variants[0]
    assert (v.desired_replicas, v.reason) == (4, "reservation")


def test_fresh_metrics_make_metrics_available_true():
    plan = plan_pool(pool([variant(queue=QUEUE)]), [], observe(running=5, waiting=0), NOW)
    assert plan.condition("MetricsAvailable").status == "True"


def test_active_reservations_add_up_and_raise_the_floor():
    p = pool([variant(lo=1, queue=QUEUE)])
    reservations = [reservation(3, name="a"), reservation(2, name="b")]
    plan = plan_pool(p, reservations, observe(running=0, waiting=0), NOW)
    v = plan.variants[0]
    assert (v.desired_replicas, v.reason, v.floor) == (5, "reservation", 5)
    assert all(g.granted for g in plan.reservations)


def test_reservation_outside_its_window_does_not_count():
    later = {"start": (NOW + timedelta(hours=1)).isoformat()}
    plan = plan_pool(pool([variant(lo=1)]), [reservation(5, window=later)], {}, NOW)
    assert plan.variants[0].desired_replicas == 1
    assert not plan.reservations[0].active and not plan.reservations[0].granted


def test_reservation_above_max_is_granted_only_in_part():
    plan = plan_pool(pool([variant(lo=1, hi=4)]), [reservation(6)], {}, NOW)
    assert plan.variants[0].desired_replicas == 4
    grant = plan.reservations[0]
    assert (grant.granted, grant.granted_replicas) == (False, 4)
    assert "replicas.max" in grant.message


def test_reservations_of_another_pool_are_ignored():
    other = Reservation.model_validate(
        {
            "metadata": {"name": "x", "namespace": "ns"},
            "spec": {
                "pool": "other",
                "variant": "v",
                "tenant": "t",
                "replicas": 9,
                "billing": {"mode": "reserved", "reservedPricePerReplicaHour": 1},
            },
        }
    )
    assert plan_pool(pool([variant(lo=1)]), [other], {}, NOW).variants[0].desired_replicas == 1


def test_scale_up_is_step_limited():
    p = pool([variant(queue={"targetPerReplica": 10, "scaleUp": {"maxStep": 4}})])
    v = plan_pool(p, [], observe(running=200), NOW, previous(5)).variants[0]
    assert (v.desired_replicas, v.reason) == (9, "stabilizing")
    assert v.last_scale_time == NOW


def test_scale_down_waits_for_the_stabilization_window():
    queue = {"targetPerReplica": 10, "scaleDown": {"stabilizationSeconds": 300}}
    p = pool([variant(queue=queue)])
    history = [(NOW - timedelta(seconds=s), 12) for s in (290, 200, 100)]
    v = plan_pool(p, [], observe(running=20), NOW, previous(12, history=history)).variants[0]
    assert (v.desired_replicas, v.reason) == (12, "stabilizing")
    # Once every recommendation in the window is low, it goes down.
    history = [(NOW - timedelta(seconds=s), 2) for s in (290, 200, 100)]
    history.insert(0, (NOW - timedelta(seconds=310), 12))
    v = plan_pool(p, [], observe(running=20), NOW, previous(12, history=history)).variants[0]
    assert (v.desired_replicas, v.reason) == (2, "queue")


def test_scale_down_step_limit_and_floor():
    queue = {"targetPerReplica": 10, "scaleDown": {"maxStep": 2, "stabilizationSeconds": 0}}
    p = pool([variant(lo=1, queue=queue)])
    v = plan_pool(p, [], observe(running=0), NOW, previous(10)).variants[0]
    assert (v.desired_replicas, v.reason) == (8, "stabilizing")


def test_budget_cuts_lowest_priority_first_never_below_floor():
    p = pool(
        [
            variant("big", gpus=8, priority=100, lo=1, hi=10, queue=QUEUE),
            variant("mid", gpus=4, priority=50, lo=1, hi=10, queue=QUEUE),
            variant("small", gpus=1, priority=10, lo=2, hi=10, queue=QUEUE),
        ],
        budget=60,
    )
    obs = {}
    for name in ("big", "mid", "small"):
        obs.update(observe(name, running=100))
    plan = plan_pool(p, [], obs, NOW)
    desired = {v.name: (v.desired_replicas, v.reason) for v in plan.variants}
    # Wants 80 + 40 + 10 = 130 GPUs. small drops to its floor 2 (122), mid to its floor 1
    # (86), then big gives up just enough whole replicas: ceil(26 / 8) = 4 (54).
    assert desired == {"small": (2, "budget"), "mid": (1, "budget"), "big": (6, "budget")}
    assert plan.gpus_planned == 54
    assert plan.condition("Overcommitted").status == "False"


def test_budget_ties_cut_the_variant_listed_later():
    p = pool([variant("a", lo=0, queue=QUEUE), variant("b", lo=0, queue=QUEUE)], budget=12)
    obs = {**observe("a", running=100), **observe("b", running=100)}
    plan = plan_pool(p, [], obs, NOW)
    assert [v.desired_replicas for v in plan.variants] == [10, 2]
    assert plan.condition("CapacityLimited").status == "True"


def test_floors_above_budget_are_kept_and_overcommitted():
    p = pool([variant("a", gpus=8, lo=2, hi=10), variant("b", gpus=8, lo=1, hi=10)], budget=16)
    plan = plan_pool(p, [reservation(2, "b")], {}, NOW)
    assert [v.desired_replicas for v in plan.variants] == [2, 2]
    assert plan.condition("Overcommitted").status == "True"
    assert plan.gpus_planned == 32


@pytest.mark.parametrize(
    "problem",
    [
        "no queue metrics",
        "Prometheus answered +inf for waiting",
        "queue metrics are 600s old",
    ],
)
def test_replicas_still_loading_are_held_while_metrics_are_missing(problem):
    # 6 planned, 0 ready (a 900 s model load), then Prometheus fails: the plan holds 6,
    # never the ready count (0 -> min), which would drop the replicas still loading.
    p = pool([variant(lo=1, queue=QUEUE)])
    at = NOW - timedelta(seconds=600) if "old" in problem else NOW
    obs = (
        observe(ready_replicas=0, at=at, running=1, waiting=1, problem=problem)
        if "inf" in problem
        else observe(ready_replicas=0, at=at, running=1, waiting=1)
        if "old" in problem
        else observe(ready_replicas=0)
    )
    plan = plan_pool(p, [], obs, NOW, previous(6))
    v = plan.variants[0]
    assert (v.desired_replicas, v.reason) == (6, "hold")
    assert problem.split(" ")[0] in plan.condition("MetricsAvailable").message


def test_a_queue_beyond_any_range_asks_for_the_maximum_without_overflow():
    p = pool([variant(hi=20, queue=QUEUE)])
    v = plan_pool(p, [], observe(running=1e300, waiting=1e300), NOW).variants[0]
    assert (v.desired_replicas, v.reason) == (20, "max")


def test_previous_desired_is_held_without_metrics_or_ready_count():
    p = pool([variant(lo=1, queue=QUEUE)])
    v = plan_pool(p, [], {}, NOW, previous(6)).variants[0]
    assert (v.desired_replicas, v.reason) == (6, "hold")


def test_now_must_carry_a_timezone():
    with pytest.raises(ValueError, match="timezone"):
        plan_pool(pool([variant()]), [], {}, NOW.replace(tzinfo=None))
