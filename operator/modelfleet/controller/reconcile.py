"""One cycle of a ModelPool: read what the cluster and Prometheus hold, call the pure core
(`render.desired`), apply what it returns.

kopf handlers call `PoolController.reconcile`; everything here is I/O around `desired()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import aiohttp
import structlog

from modelfleet.api.keys import read_api_keys_secret
from modelfleet.api.load import InputError, InvalidInput
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.names import (
    API_VERSION,
    POLICIES,
    POOL_LABEL,
    POOLS,
    RESERVATIONS,
    VARIANT_LABEL,
    workload_name,
)
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.kube import (
    ApiError,
    Conflict,
    KubeClient,
    object_path,
    object_ref,
    resource_path,
)
from modelfleet.controller.clock import ScaledClock, WallClock
from modelfleet.controller.gateways import GatewayPublisher
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.observe.observation import RateSample, VariantObservation, variant_key
from modelfleet.observe.prometheus import (
    HistoryWindow,
    MetricsUnavailable,
    UsageQueries,
    history_windows,
)
from modelfleet.observe.usage import Usage, UsageKey, UsageTable
from modelfleet.plan.budgets import period_bounds
from modelfleet.plan.scaling.types import PoolPlan
from modelfleet.render.desired import Desired, Event, desired, failed_cycle
from modelfleet.render.envoy.xds import HostPort
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.gateway_workload import gateway_name
from modelfleet.render.inputs import FleetInputs, Key, ParseCache, Rejected
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import BuiltPoolStatus

log = structlog.get_logger(__name__)

APPLY_ATTEMPTS = 3


class ObservationSource(Protocol):
    async def observe_pool(
        self, namespace: str, pool: str, history: Sequence[HistoryWindow] = ()
    ) -> dict[str, VariantObservation]: ...

    async def usage(self, queries: UsageQueries) -> dict[UsageKey, Usage]: ...


class EventSink(Protocol):
    def __call__(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None: ...


@dataclass
class CycleResult:
    plan: PoolPlan | None
    errors: list[InputError] = field(default_factory=list)
    metrics_error: str | None = None


@dataclass
class PoolController:
    kube: KubeClient
    metrics_for: Callable[[ModelPool], ObservationSource | None]
    post_event: EventSink
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    clock: WallClock | ScaledClock = field(default_factory=WallClock)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    publisher: GatewayPublisher | None = None
    # What the operator remembers between cycles: each resource parsed once per change,
    # each pool's workloads and each gateway rendered in proportion to what changed. One
    # entry per object.
    parsed: ParseCache = field(default_factory=ParseCache)
    renders: RenderCache = field(default_factory=RenderCache)

    def __post_init__(self) -> None:
        if self.publisher is None:
            self.publisher = GatewayPublisher(self.kube)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A deleted resource: drop what the operator remembered of it."""
        self.parsed.forget(kind, namespace, name)
        self.renders.forget(kind, namespace, name)
        if kind == "RoutingPolicy":
            self.publisher.forget(namespace, name)

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
        # The pool as stored now: the body kopf hands the daemon trails the watch stream, and
        # a cycle woken right after the previous one wrote its status would plan from the
        # status before it (and forget what it planned, e.g. replicas still loading).
        current = await self.kube.get(object_path(object_ref(body)))
        if current is None:
            return CycleResult(None)  # deleted meanwhile: its owner references clean up
        body = current
        now = self.clock.now()
        meta = body.get("metadata", {})
        logger = log.bind(namespace=meta.get("namespace"), name=meta.get("name"), kind="ModelPool")
        pool, rejected = self.parsed.parse(body)
        if rejected is not None:
            await self._write(desired(FleetInputs(now, rejected=[rejected])))
            logger.warning("pool.invalid", errors=[str(e) for e in rejected.errors])
            return CycleResult(None, list(rejected.errors))
        key = (pool.namespace, pool.name)
        written = self.parsed.written(body)
        reservations, policies, others_rejected = await self._dependents(pool)
        deployments = await self._deployments(pool)
        observations, metrics_error = await self._observe(pool, deployments)
        keys, key_errors = await self._api_keys(policies)
        budget_usage, budget_errors = await self._budget_usage(pool, policies, now)
        inputs = FleetInputs(
            now=now,
            pools=[pool],
            written_statuses={key: written} if written else {},
            reservations=reservations,
            policies=policies,
            rejected=others_rejected,
            observations=observations,
            metrics_errors={key: metrics_error} if metrics_error else {},
            usage={key: await self._usage_since_last_plan(pool, written, now)},
            budget_usage=budget_usage,
            budget_usage_errors=budget_errors,
            api_keys=keys,
            api_key_errors=key_errors,
            service_addresses={key: await self._service_addresses(pool)},
            gateway_ready=await self._gateways_ready(policies),
            deployed_replicas={
                variant_key(pool.namespace, pool.name, variant): int(
                    (d.get("spec") or {}).get("replicas") or 0
                )
                for variant, d in deployments.items()
            },
            gateway=self.gateway,
        )
        with self.metrics.plan_seconds.labels(*key).time():
            result = desired(inputs, self.renders)
        for manifest in result.workloads:
            await self._apply_with_retry(manifest)
        by_name = {p.name: p for p in policies}
        for (_, name), gateway in result.gateways.items():
            await self.publisher.publish(gateway, by_name[name], result)
        await self._write(result, read=[pool, *policies, *reservations])
        plan = result.plans[key]
        self.metrics.record_plan(plan, now)
        for policy in policies:
            self.metrics.record_degrade_rules(policy)
            update = result.statuses.get((policy.kind, policy.namespace, policy.name))
            if update is not None and not update.partial:
                self.metrics.record_budgets(policy.namespace, policy.name, update.status.budgets)
        if key in result.costs:
            self.metrics.record_costs(pool.namespace, pool.name, result.costs[key])
        logger.info(
            "pool.planned",
            gpus_planned=plan.gpus_planned,
            desired={v.name: v.desired_replicas for v in plan.variants},
            reasons={v.name: v.reason for v in plan.variants},
            metrics_error=metrics_error,
        )
        return CycleResult(plan, [], metrics_error)

    async def report_failure(self, body: Mapping[str, Any], error: BaseException) -> None:
        """A cycle that failed leaves the cluster as it was; the pool's Reconciled condition
        says why (best effort: the API server may be what failed)."""
        pool, _ = self.parsed.parse(body)
        if pool is None:
            return
        if isinstance(error, ApiError):
            reason = "ApiError"
        elif isinstance(error, OSError | TimeoutError | aiohttp.ClientError):
            reason = "ApiUnreachable"
        else:
            reason = "CycleFailed"
        message = f"{type(error).__name__}: {str(error)[:300]}; nothing was changed"
        update = failed_cycle(pool, reason, message, self.clock.now(), self.parsed.written(body))
        try:
            await self.kube.merge_patch(
                object_path(update.target.body()), {"status": update.wire()}, subresource="status"
            )
        except Exception as err:  # noqa: BLE001 - nothing more to do until the next cycle
            log.warning(
                "pool.status_unwritable",
                namespace=pool.namespace,
                name=pool.name,
                error=repr(err)[:300],
            )

    async def _write(self, result: Desired, read: Sequence[Any] = ()) -> None:
        """Statuses, then Events: what the core decided, recorded. A status equal to the
        one its resource was `read` with this cycle is not written again (writing them
        anyway was a PATCH each, every refresh: about 1,400 of 2,400 at 1,000 pools)."""
        for update in result.statuses_to_write(read):
            stored = await self.kube.merge_patch(
                object_path(update.target.body()),
                {"status": update.wire()},
                subresource="status",
            )
            if not update.partial:
                target = update.target
                version = ((stored or {}).get("metadata") or {}).get("resourceVersion")
                self.parsed.wrote(
                    target.kind, target.namespace, target.name, version, update.content
                )
        for event in result.events:
            self._post(event)

    def _post(self, event: Event) -> None:
        self.post_event(
            event.target.body(), type=event.type, reason=event.reason, message=event.message
        )

    async def _dependents(
        self, pool: ModelPool
    ) -> tuple[list[Any], list[RoutingPolicy], list[Rejected]]:
        return await self._dependents_of(pool.namespace, pool.name)

    async def _dependents_of(
        self, namespace: str, pool: str
    ) -> tuple[list[Any], list[RoutingPolicy], list[Rejected]]:
        """A pool's Reservations and RoutingPolicies, parsed; the invalid ones apart."""
        valid: dict[str, list[Any]] = {RESERVATIONS: [], POLICIES: []}
        rejected: list[Rejected] = []
        for plural in (RESERVATIONS, POLICIES):
            for item in await self.kube.list(resource_path(API_VERSION, plural, namespace)):
                if (item.get("spec") or {}).get("pool") != pool:
                    continue
                model, problem = self.parsed.parse(item)
                if problem is not None:
                    rejected.append(problem)
                else:
                    valid[plural].append(model)
        return valid[RESERVATIONS], valid[POLICIES], rejected

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
            history = history_windows(pool, self.clock.wall_seconds)
            try:
                observed = await source.observe_pool(pool.namespace, pool.name, history)
            except MetricsUnavailable as err:
                error = str(err)
            except Exception as err:  # an unexpected answer must cost a hold, not the cycle
                log.warning("pool.metrics_failed", error=repr(err)[:300])
                error = f"reading Prometheus failed: {type(err).__name__}"
            else:
                observations = {key: self._on_clock(obs) for key, obs in observed.items()}
        # Ready replicas come from the Deployments themselves, never from metrics.
        for variant, deployment in deployments.items():
            key = variant_key(pool.namespace, pool.name, variant)
            current = observations.get(key, VariantObservation())
            observations[key] = replace(current, ready_replicas=ready_replicas(deployment))
        return observations, error

    def _on_clock(self, obs: VariantObservation) -> VariantObservation:
        """Prometheus's sample times on the operator's clock (they differ on a sped-up one)."""
        from_wall = self.clock.from_wall
        return replace(
            obs,
            sampled_at=from_wall(obs.sampled_at) if obs.sampled_at else None,
            demand_history=tuple(RateSample(from_wall(s.at), s.rate) for s in obs.demand_history),
        )

    async def _gateways_ready(self, policies: Sequence[RoutingPolicy]) -> dict[Key, int]:
        """Ready pods of the gateway Deployment the operator runs for each policy."""
        if self.gateway.image is None:
            return {}
        ready = {}
        for policy in policies:
            deployment = await self.kube.get(
                resource_path("apps/v1", "deployments", policy.namespace, gateway_name(policy))
            )
            ready[(policy.namespace, policy.name)] = ready_replicas(deployment or {})
        return ready

    async def reconcile_orphans(self, namespace: str, pool: str) -> None:
        """Reservations and RoutingPolicies whose pool does not exist (deleted, or never
        created): no pool cycle runs for them, so their status is written here."""
        if await self.kube.get(resource_path(API_VERSION, POOLS, namespace, pool)) is not None:
            return
        reservations, policies, rejected = await self._dependents_of(namespace, pool)
        if reservations or policies or rejected:
            inputs = FleetInputs(
                self.clock.now(), reservations=reservations, policies=policies, rejected=rejected
            )
            try:
                await self._write(desired(inputs))
            except Exception as err:  # noqa: BLE001 - the next change retries
                log.warning(
                    "orphans.status_unwritable",
                    namespace=namespace,
                    pool=pool,
                    error=repr(err)[:300],
                )

    async def _usage_since_last_plan(
        self, pool: ModelPool, written: BuiltPoolStatus | None, now: datetime
    ) -> UsageTable:
        """What the tenants used through the pool's gateways since its previous plan: the
        ledger's usage lines."""
        if written is not None:
            previous = written.planned_at
        else:
            previous = pool.status.planned_at if pool.status else None
        source = self.metrics_for(pool)
        if previous is None or now <= previous or source is None:
            return {}
        # Prometheus counts in wall time, whatever the operator's clock runs at.
        window = self.clock.wall_seconds((now - previous).total_seconds())
        try:
            return await source.usage(
                UsageQueries(pool.namespace, "pool", pool.name, round(window))
            )
        except Exception as err:  # billing waits for the next cycle; the plan does not
            log.warning(
                "pool.usage_unread",
                namespace=pool.namespace,
                name=pool.name,
                error=str(err)[:300],
            )
            return {}

    async def _budget_usage(
        self, pool: ModelPool, policies: Sequence[RoutingPolicy], now: datetime
    ) -> tuple[dict[Key, dict[str, UsageTable]], dict[Key, str]]:
        """Per policy with budgets: what its tenants used since each budget period began
        (the period's start is exact in the pool's time zone), or why it is unknown."""
        usage: dict[Key, dict[str, UsageTable]] = {}
        errors: dict[Key, str] = {}
        source = self.metrics_for(pool)
        for policy in policies:
            periods = sorted({budget.period for budget in policy.spec.budgets})
            if not periods:
                continue
            key = (policy.namespace, policy.name)
            if source is None:
                errors[key] = (
                    "no Prometheus URL: set the pool's spec.metrics.prometheusUrl or run with "
                    "--prometheus-url"
                )
                continue
            try:
                usage[key] = {}
                for period in periods:
                    start, _ = period_bounds(now, period, pool.spec.timezone)
                    seconds = self.clock.wall_seconds((now - start).total_seconds())
                    queries = UsageQueries(policy.namespace, "policy", policy.name, round(seconds))
                    usage[key][period] = await source.usage(queries)
            except MetricsUnavailable as err:
                errors[key] = str(err)
                del usage[key]
            except Exception as err:  # an unexpected answer keeps the states, not the cycle
                log.warning(
                    "policy.spend_unread",
                    namespace=policy.namespace,
                    name=policy.name,
                    error=repr(err)[:300],
                )
                errors[key] = f"reading the spend from Prometheus failed: {type(err).__name__}"
                del usage[key]
        return usage, errors

    async def _api_keys(
        self, policies: Sequence[RoutingPolicy]
    ) -> tuple[dict[Key, Any], dict[Key, list[InputError]]]:
        keys: dict[Key, Any] = {}
        errors: dict[Key, list[InputError]] = {}
        for policy in policies:
            name = policy.spec.gateway.api_key_secret
            secret = await self.kube.get(resource_path("v1", "secrets", policy.namespace, name))
            try:
                keys[(policy.namespace, policy.name)] = read_api_keys_secret(policy, secret)
            except InvalidInput as err:
                errors[(policy.namespace, policy.name)] = err.errors
        return keys, errors

    async def _service_addresses(self, pool: ModelPool) -> dict[str, HostPort]:
        """Each variant's Service by its cluster IP: stable for the Service's life, and no
        DNS lookups in Envoy. Until a Service has one, the renderer uses the DNS name."""
        addresses = {}
        for variant in pool.spec.variants:
            service = await self.kube.get(
                resource_path(
                    "v1", "services", pool.namespace, workload_name(pool.name, variant.name)
                )
            )
            cluster_ip = ((service or {}).get("spec") or {}).get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                addresses[variant.name] = (cluster_ip, variant.port)
        return addresses

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


def ready_replicas(deployment: Mapping[str, Any]) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)
