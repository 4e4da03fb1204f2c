"""One reconcile cycle of a ModelPool: read, plan (pure core), apply, record.

kopf handlers call `PoolController.reconcile`; everything here is I/O around the pure
planner, in the order DESIGN.md's pipeline gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import structlog

from modelfleet.api.load import InputError, parse_resource
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.apply.kube import (
    ApiError,
    Conflict,
    KubeClient,
    object_path,
    object_ref,
    resource_path,
)
from modelfleet.controller.clock import ScaledClock, WallClock
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.observe.prometheus import MetricsUnavailable
from modelfleet.plan.billing import pool_lines, requests_by_reservation, reservation_lines
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.plan.scaling.types import PoolPlan
from modelfleet.render.status import (
    errors_message,
    invalid_spec_status,
    pool_status,
    previous_from_status,
    reservation_status,
)
from modelfleet.render.workloads import POOL_LABEL, VARIANT_LABEL, render_deployment, render_service

log = structlog.get_logger(__name__)

API = "modelfleet.io/v1alpha1"
APPLY_ATTEMPTS = 3


class ObservationSource(Protocol):
    async def observe_pool(self, namespace: str, pool: str) -> dict[str, VariantObservation]: ...

    async def tenant_requests(self, seconds: float) -> dict[str, float]: ...


class EventSink(Protocol):
    def __call__(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


@dataclass
class CycleResult:
    plan: PoolPlan | None
    errors: list[InputError] = field(default_factory=list)
    metrics_error: str | None = None


def without_status(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(body).items() if k != "status"}


def parse_object(body: Mapping[str, Any]) -> tuple[Any, list[InputError]]:
    return parse_resource(without_status(body))


@dataclass
class PoolController:
    kube: KubeClient
    metrics_for: Callable[[ModelPool], ObservationSource | None]
    post_event: EventSink
    clock: WallClock | ScaledClock = field(default_factory=WallClock)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    after_plan: list[Callable[..., Any]] = field(default_factory=list)

    async def reconcile(self, body: Mapping[str, Any]) -> CycleResult:
        meta = body.get("metadata", {})
        labels = (meta.get("namespace", ""), meta.get("name", ""))
        started = time.perf_counter()
        try:
            return await self._cycle(body)
        except ApiError:
            self.metrics.apply_errors.labels(*labels).inc()
            raise
        finally:
            self.metrics.cycle_seconds.labels(*labels).observe(time.perf_counter() - started)

    async def _cycle(self, body: Mapping[str, Any]) -> CycleResult:
        now = self.clock.now()
        meta = body.get("metadata", {})
        logger = log.bind(namespace=meta.get("namespace"), name=meta.get("name"), kind="ModelPool")
        pool, errors = parse_object(body)
        if errors or pool is None:
            await self._refuse(body, errors, now)
            logger.warning("pool.invalid", errors=[str(e) for e in errors])
            return CycleResult(None, errors)
        reservations = await self._reservations(pool)
        deployments = await self._deployments(pool)
        observations, metrics_error = await self._observe(pool, deployments)
        previous = previous_from_status(body.get("status"))
        with self.metrics.plan_seconds.labels(pool.namespace, pool.name).time():
            plan = plan_pool(pool, reservations, observations, now, previous)
        await self._apply(pool, body, plan, deployments, previous)
        ready = {v: ready_replicas(d) for v, d in deployments.items()}
        status = pool_status(
            plan,
            ready,
            meta.get("generation"),
            (body.get("status") or {}).get("conditions"),
            metrics_error,
        )
        await self.kube.merge_patch(
            object_path(object_ref(body)), {"status": status}, subresource="status"
        )
        await self._record_reservations(reservations, plan, now)
        self.metrics.record_plan(plan, ready, now)
        if previous is not None and now > previous.at:
            await self._accrue_costs(pool, reservations, ready, previous.at, now)
        for hook in self.after_plan:
            await hook(pool, plan, observations)
        logger.info(
            "pool.planned",
            gpus_planned=plan.gpus_planned,
            desired={v.name: v.desired_replicas for v in plan.variants},
            reasons={v.name: v.reason for v in plan.variants},
            metrics_error=metrics_error,
        )
        return CycleResult(plan, [], metrics_error)

    async def _refuse(self, body: Mapping[str, Any], errors: list[InputError], now: datetime):
        meta = body.get("metadata", {})
        status = invalid_spec_status(
            errors, meta.get("generation"), (body.get("status") or {}).get("conditions"), now
        )
        await self.kube.merge_patch(
            object_path(object_ref(body)), {"status": status}, subresource="status"
        )
        self.post_event(
            body,
            type="Warning",
            reason="InvalidSpec",
            message=errors_message(errors, 1000),
        )

    async def _reservations(self, pool: ModelPool) -> list[Reservation]:
        items = await self.kube.list(resource_path(API, "reservations", pool.namespace))
        valid = []
        for item in items:
            reservation, errors = parse_object(item)
            if reservation is not None and not errors and reservation.spec.pool == pool.name:
                valid.append(reservation)
        return valid

    async def _deployments(self, pool: ModelPool) -> dict[str, dict[str, Any]]:
        items = await self.kube.list(
            resource_path("apps/v1", "deployments", pool.namespace),
            label_selector=f"{POOL_LABEL}={pool.name}",
        )
        return {
            d["metadata"]["labels"][VARIANT_LABEL]: d
            for d in items
            if VARIANT_LABEL in (d["metadata"].get("labels") or {})
        }

    async def _observe(
        self, pool: ModelPool, deployments: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, VariantObservation], str | None]:
        source = self.metrics_for(pool)
        observations: dict[str, VariantObservation] = {}
        error = None
        if source is None:
            error = "no Prometheus URL: set spec.metrics.prometheusUrl or run with --prometheus-url"
        else:
            try:
                observed = await source.observe_pool(pool.namespace, pool.name)
            except MetricsUnavailable as err:
                error = str(err)
            else:
                observations = {
                    key: replace(obs, sampled_at=self.clock.from_wall(obs.sampled_at))
                    if obs.sampled_at
                    else obs
                    for key, obs in observed.items()
                }
        # Ready replicas come from the Deployments themselves, never from metrics.
        for variant, deployment in deployments.items():
            key = variant_key(pool.namespace, pool.name, variant)
            current = observations.get(key, VariantObservation())
            observations[key] = replace(current, ready_replicas=ready_replicas(deployment))
        return observations, error

    async def _apply(
        self,
        pool: ModelPool,
        body: Mapping[str, Any],
        plan: PoolPlan,
        deployments: Mapping[str, dict[str, Any]],
        previous: Any,
    ) -> None:
        for variant_plan in plan.variants:
            variant = pool.spec.variant(variant_plan.name)
            assert variant is not None
            live = deployments.get(variant.name)
            live_replicas = (live or {}).get("spec", {}).get("replicas")
            before = previous.variants.get(variant.name) if previous else None
            desired = variant_plan.desired_replicas
            await self._apply_with_retry(render_service(pool, variant))
            await self._apply_with_retry(render_deployment(pool, variant, desired))
            if before is not None and before.desired_replicas != desired:
                self.post_event(
                    body,
                    type="Normal",
                    reason="Scaled",
                    message=f"{variant.name}: {before.desired_replicas} -> {desired} "
                    f"({variant_plan.reason}): {variant_plan.message}"[:1000],
                )
            elif live_replicas is not None and live_replicas != desired:
                self.post_event(
                    body,
                    type="Warning",
                    reason="ReplicasRestored",
                    message=f"{variant.name}: Deployment had {live_replicas} replicas, set by "
                    f"hand; restored the planned {desired} ({variant_plan.reason})",
                )

    async def _apply_with_retry(self, manifest: dict[str, Any]) -> None:
        for attempt in range(APPLY_ATTEMPTS):
            try:
                await self.kube.apply(manifest)
                return
            except Conflict:
                if attempt == APPLY_ATTEMPTS - 1:
                    raise
                # Someone changed it between our read and write: read again, then re-apply.
                await self.kube.get(object_path(manifest))

    async def _accrue_costs(
        self,
        pool: ModelPool,
        reservations: list[Reservation],
        ready: Mapping[str, int],
        since: datetime,
        now: datetime,
    ) -> None:
        hours = (now - since).total_seconds() / 3600
        lines = pool_lines(pool, {name: count * hours for name, count in ready.items()})
        by_tenant: dict[str, float] = {}
        source = self.metrics_for(pool)
        if source is not None and reservations:
            try:
                # Prometheus counts in wall time, whatever the operator's clock runs at.
                window = self.clock.wall_seconds((now - since).total_seconds())
                by_tenant = await source.tenant_requests(window)
            except MetricsUnavailable:
                by_tenant = {}
        requests = requests_by_reservation(reservations, by_tenant)
        lines += reservation_lines(reservations, since, now, requests)
        self.metrics.record_costs(pool.namespace, pool.name, lines)

    async def _record_reservations(
        self, reservations: list[Reservation], plan: PoolPlan, now: datetime
    ) -> None:
        by_name = {r.name: r for r in reservations}
        condition = plan.condition("Overcommitted")
        overcommitted = condition is not None and condition.status == "True"
        for grant in plan.reservations:
            reservation = by_name.get(grant.name)
            if reservation is None:
                continue
            previous = (
                reservation.status.model_dump(by_alias=True, mode="json")
                if reservation.status
                else {}
            )
            status = reservation_status(
                grant,
                reservation.metadata.generation,
                overcommitted,
                previous.get("conditions"),
                now,
            )
            await self.kube.merge_patch(
                object_path(object_ref(reservation.to_wire())),
                {"status": status},
                subresource="status",
            )


def ready_replicas(deployment: Mapping[str, Any]) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)
