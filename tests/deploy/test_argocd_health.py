"""The Argo CD health checks on the statuses the operator writes: each status is built by
the operator's own code (`desired()` and its status builders) from the sample fleet, then
read by the Lua script as Argo CD would read it."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.api.load import InputError, load_resources
from modelfleet.api.modelpool import ModelPoolStatus
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.plan.scaling.types import PlanCondition, ReservationGrant
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs, ObjectRef, Rejected
from modelfleet.render.status import merge_conditions, reservation_status
from tests.deploy.argocd_health import health

from .chart import ROOT

# A Monday, 11:00 in Asia/Shanghai: the samples' business-hours schedule is on.
NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
SAMPLES = load_resources([ROOT / "manifests" / "samples"])
# Generation 1, as the API server sets it on create: conditions record what they saw.
POOL = SAMPLES.pools[0].model_copy(
    update={"metadata": SAMPLES.pools[0].metadata.model_copy(update={"generation": 1})}
)
RESERVATION = SAMPLES.reservations[0]
POLICY = SAMPLES.policies[0]


def with_status(resource, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    wire = copy.deepcopy(resource.to_wire())
    wire["metadata"]["generation"] = generation
    if status is not None:
        wire["status"] = status
    return wire


def with_budget(budget: int):
    data = POOL.to_wire()
    data["spec"]["gpuBudget"] = budget
    return type(POOL).model_validate(data)


def fresh_metrics(pool) -> dict[str, VariantObservation]:
    return {
        variant_key(pool.namespace, pool.name, v.name): VariantObservation(
            running=0, waiting=0, sampled_at=NOW - timedelta(seconds=5)
        )
        for v in pool.spec.variants
    }


def wire(model) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json")


def planned(pool=POOL, *, ready=True, metrics=True, metrics_error=None) -> dict[str, Any]:
    """The status the operator writes when the pool's Deployments have (or have not yet)
    every planned replica ready."""
    queues = fresh_metrics(pool) if metrics else {}
    key = (pool.namespace, pool.name)
    first = desired(FleetInputs(NOW, pools=[pool], reservations=[RESERVATION], observations=queues))
    observations = {
        variant_key(*key, v.name): replace(
            queues.get(variant_key(*key, v.name), VariantObservation()),
            ready_replicas=v.desired_replicas if ready else 0,
        )
        for v in first.plans[key].variants
    }
    inputs = FleetInputs(
        NOW,
        pools=[pool],
        reservations=[RESERVATION],
        observations=observations,
        metrics_errors={key: metrics_error} if metrics_error else {},
    )
    return wire(desired(inputs).status_of("ModelPool", *key))


def refused() -> dict[str, Any]:
    """A planned pool whose spec then became invalid: its last plan stays, Ready says why."""
    error = InputError("", "ModelPool llm/chat", "spec.timezone", "unknown time zone")
    before = planned()
    previous = ModelPoolStatus.model_validate(before).conditions
    rejected = Rejected(ObjectRef("ModelPool", "llm", "chat"), 1, tuple(previous), (error,))
    update = desired(FleetInputs(NOW, rejected=[rejected])).statuses[("ModelPool", "llm", "chat")]
    return {**before, **update.wire()}


POOLS = {
    "no status yet": (lambda: None, 1, "Progressing"),
    "every variant ready, metrics fresh": (planned, 1, "Healthy"),
    "replicas loading their model": (lambda: planned(ready=False), 1, "Progressing"),
    "loading, no metrics yet": (lambda: planned(ready=False, metrics=False), 1, "Progressing"),
    "ready but Prometheus down": (
        lambda: planned(metrics_error="Prometheus failed"),
        1,
        "Degraded",
    ),
    "ready but metrics stale": (lambda: planned(metrics=False), 1, "Degraded"),
    "reservations exceed the budget": (lambda: planned(with_budget(4)), 1, "Degraded"),
    "budget cuts a variant": (lambda: planned(with_budget(200)), 1, "Healthy"),
    "invalid spec": (refused, 1, "Degraded"),
    "spec edited, not planned yet": (planned, 2, "Progressing"),
    "fixed spec, not planned yet": (refused, 2, "Progressing"),
}


@pytest.mark.parametrize("case", POOLS)
def test_model_pool_health(case):
    status, generation, expected = POOLS[case]
    shown, message = health(with_status(POOL, status(), generation))
    assert shown == expected, message


def test_pool_health_messages_say_why():
    assert "spec.timezone" in health(with_status(POOL, refused()))[1]
    assert "budget" in health(with_status(POOL, planned(with_budget(200))))[1]
    assert "GPUs" in health(with_status(with_budget(4), planned(with_budget(4))))[1]


def grant(*, active=True, granted=True) -> ReservationGrant:
    return ReservationGrant(
        namespace="llm",
        name=RESERVATION.name,
        tenant="fin-risk",
        variant="qwen3-30b-moe",
        replicas=5,
        active=active,
        granted=granted,
        granted_replicas=5 if granted else 0,
        message="5 of 5 replicas held" if granted else "no room under replicas.max",
    )


RESERVATIONS = {
    "no status yet": (None, 1, "Progressing"),
    "granted": (wire(reservation_status(grant(), 1, False, None, NOW)), 1, "Healthy"),
    "outside its window": (
        wire(reservation_status(grant(active=False, granted=False), 1, False, None, NOW)),
        1,
        "Suspended",
    ),
    "expired": (
        wire(reservation_status(grant(active=False, granted=False), 1, False, None, NOW, True)),
        1,
        "Suspended",
    ),
    "not granted": (
        wire(reservation_status(grant(granted=False), 1, False, None, NOW)),
        1,
        "Degraded",
    ),
    "edited, not granted yet": (
        wire(reservation_status(grant(), 1, False, None, NOW)),
        2,
        "Progressing",
    ),
}


@pytest.mark.parametrize("case", RESERVATIONS)
def test_reservation_health(case):
    status, generation, expected = RESERVATIONS[case]
    shown, message = health(with_status(RESERVATION, status, generation))
    assert shown == expected, message


def policy_status(status: str, reason: str) -> dict[str, Any]:
    condition = PlanCondition("Ready", status, reason, f"{reason} message")
    return {"conditions": [wire(c) for c in merge_conditions(None, [condition], NOW, 1)]}


POLICIES = {
    "no status yet": (None, 1, "Progressing"),
    "published": (policy_status("True", "ConfigPublished"), 1, "Healthy"),
    "invalid spec": (policy_status("False", "InvalidSpec"), 1, "Degraded"),
    "API keys invalid": (policy_status("False", "ApiKeysInvalid"), 1, "Degraded"),
    "Envoy refused the render": (policy_status("False", "EnvoyRejectedConfig"), 1, "Degraded"),
    "edited, not published yet": (policy_status("True", "ConfigPublished"), 2, "Progressing"),
}


@pytest.mark.parametrize("case", POLICIES)
def test_routing_policy_health(case):
    status, generation, expected = POLICIES[case]
    shown, message = health(with_status(POLICY, status, generation))
    assert shown == expected, message
