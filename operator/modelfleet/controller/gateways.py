"""After each pool plan: every RoutingPolicy of the pool -> its gateway's Envoy config.

Render (pure), validate with the real Envoy binary, and only then write: the bootstrap,
listeners and clusters into the ConfigMap named by `spec.gateway.configMap`, and the
routes into the Secret `<configMap>-routes`, because the routes carry the API keys
(Envoy's api_key_auth reads its credentials from the route configuration). An invalid
render changes nothing in the cluster: the last good config keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
import yaml

from modelfleet.api.keys import ApiKey, parse_api_keys
from modelfleet.api.load import (
    InputError,
    InvalidInput,
    Resources,
    check_references,
    parse_resource,
)
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.kube import KubeClient, object_path, object_ref, resource_path
from modelfleet.apply.validate import InvalidEnvoyConfig, validate_with_envoy
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.observe.observation import Observations
from modelfleet.plan.routing import plan_routing, routing_table_json
from modelfleet.plan.scaling.types import PlanCondition, PoolPlan
from modelfleet.render.envoy.names import BOOTSTRAP_FILE, CLUSTERS_FILE, LISTENERS_FILE, ROUTES_FILE
from modelfleet.render.envoy.render import render_gateway
from modelfleet.render.status import errors_message, merge_conditions
from modelfleet.render.workloads import MANAGED_BY, workload_name

log = structlog.get_logger(__name__)

API = "modelfleet.io/v1alpha1"
CONFIGMAP_FILES = (BOOTSTRAP_FILE, LISTENERS_FILE, CLUSTERS_FILE)
API_KEYS_FIELD = "keys.yaml"
HASH_ANNOTATION = "modelfleet.io/config-hash"


def routes_secret_name(config_map: str) -> str:
    return f"{config_map}-routes"


def config_hash(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class GatewaySettings:
    config_dir: str = "/etc/modelfleet/gateway"
    listen_host: str = "0.0.0.0"
    admin: tuple[str, int] = ("0.0.0.0", 9901)
    access_log: str = "/dev/stdout"


def render_inputs(
    table: Any,
    pool: ModelPool,
    policy: RoutingPolicy,
    keys: list[ApiKey],
    backends: Mapping[str, tuple[str, int]],
    settings: GatewaySettings,
) -> str:
    """A fingerprint of everything `render_gateway` reads."""
    document = {
        "table": routing_table_json(table),
        "pool": pool.spec.to_wire(),
        "policy": policy.spec.to_wire(),
        "keys": [[k.id, k.key, k.tenant] for k in keys],
        "backends": sorted((name, list(address)) for name, address in backends.items()),
        "settings": [
            settings.config_dir,
            settings.listen_host,
            list(settings.admin),
            settings.access_log,
        ],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def owner(policy: RoutingPolicy) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "RoutingPolicy",
        "name": policy.name,
        "uid": policy.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def gateway_objects(
    policy: RoutingPolicy, files: Mapping[str, str], digest: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pure: the ConfigMap and Secret that carry one gateway's files."""
    config_map = policy.spec.gateway.config_map
    metadata = {
        "namespace": policy.namespace,
        "labels": {**MANAGED_BY, "modelfleet.io/routing-policy": policy.name},
        "annotations": {HASH_ANNOTATION: digest},
        "ownerReferences": [owner(policy)],
    }
    return (
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config_map, **metadata},
            "data": {name: files[name] for name in CONFIGMAP_FILES},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": routes_secret_name(config_map), **metadata},
            "data": {ROUTES_FILE: base64.b64encode(files[ROUTES_FILE].encode()).decode()},
        },
    )


class GatewayPublisher:
    def __init__(
        self,
        kube: KubeClient,
        settings: GatewaySettings,
        validate: Callable[[Mapping[str, str]], None] = validate_with_envoy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: OperatorMetrics | None = None,
    ):
        self.kube = kube
        self.settings = settings
        self.validate = validate
        self.clock = clock
        # Rendering is most of a cycle's CPU (bench/results/operator.json): while a policy's
        # inputs and its published hash stay as they were, there is nothing to render.
        self._published: dict[tuple[str, str], tuple[str, str]] = {}
        self.metrics = metrics

    async def __call__(self, pool: ModelPool, plan: PoolPlan, observations: Observations):
        items = await self.kube.list(resource_path(API, "routingpolicies", pool.namespace))
        for item in items:
            if (item.get("spec") or {}).get("pool") == pool.name:
                await self.publish(item, pool, observations)

    async def publish(
        self, body: Mapping[str, Any], pool: ModelPool, observations: Observations
    ) -> None:
        now = self.clock()
        meta = body["metadata"]
        logger = log.bind(namespace=meta["namespace"], name=meta["name"], kind="RoutingPolicy")
        status = body.get("status") or {}
        policy, errors = parse_resource({k: v for k, v in body.items() if k != "status"})
        if policy is not None and not errors:
            errors = check_references(Resources(pools=[pool], policies=[policy]))
        if errors or policy is None:
            await self._conditions(body, now, _invalid("InvalidSpec", errors))
            logger.warning("gateway.invalid_spec", errors=[str(e) for e in errors])
            return
        if self.metrics is not None:
            self.metrics.record_degrade_rules(policy)
        try:
            keys = await self._api_keys(policy)
        except InvalidInput as err:
            await self._conditions(body, now, _invalid("ApiKeysInvalid", err.errors))
            logger.warning("gateway.api_keys_invalid", errors=[str(e) for e in err.errors])
            return
        table = plan_routing(policy, pool, observations)
        backends = await self._service_addresses(pool)
        inputs = render_inputs(table, pool, policy, keys, backends, self.settings)
        key = (policy.namespace, policy.name)
        digest = status.get("configHash")
        if self._published.get(key) != (inputs, digest):
            files = render_gateway(
                table,
                pool,
                policy,
                keys,
                backends,
                listen=(self.settings.listen_host, policy.spec.gateway.listener_port),
                admin=self.settings.admin,
                config_dir=self.settings.config_dir,
                access_log_path=self.settings.access_log,
            )
            digest = config_hash(files)
            if digest != status.get("configHash"):
                try:
                    await asyncio.to_thread(self.validate, files)
                except InvalidEnvoyConfig as err:
                    reason = str(err)[:2000]
                    condition = PlanCondition("Ready", "False", "EnvoyRejectedConfig", reason)
                    await self._conditions(body, now, [condition])
                    logger.error("gateway.invalid_config", error=str(err)[:500])
                    return
                config_map, secret = gateway_objects(policy, files, digest)
                # Clusters and routes travel in two objects: the sidecar applies them together.
                await self.kube.apply(secret)
                await self.kube.apply(config_map)
                logger.info("gateway.published", config_hash=digest)
            self._published[key] = (inputs, digest)
        table_json = routing_table_json(table)
        ready = PlanCondition(
            "Ready",
            "True",
            "ConfigPublished",
            f"config {digest} in ConfigMap {policy.spec.gateway.config_map} and Secret "
            f"{routes_secret_name(policy.spec.gateway.config_map)}",
        )
        patch = {
            "observedGeneration": meta.get("generation"),
            "configHash": digest,
            "routes": [
                {"name": r["name"], "backends": r["backends"]} for r in table_json["routes"]
            ],
            "conditions": merge_conditions(
                status.get("conditions"), [ready], now, meta.get("generation")
            ),
        }
        await self.kube.merge_patch(
            object_path(object_ref(body)), {"status": patch}, subresource="status"
        )

    async def _api_keys(self, policy: RoutingPolicy) -> list[ApiKey]:
        name = policy.spec.gateway.api_key_secret
        source = f"Secret {policy.namespace}/{name}"
        secret = await self.kube.get(resource_path("v1", "secrets", policy.namespace, name))
        if secret is None:
            raise InvalidInput(
                [
                    InputError(
                        source,
                        policy.ref,
                        "spec.gateway.apiKeySecret",
                        f"Secret {name!r} does not exist: create it with a {API_KEYS_FIELD} entry "
                        "`keys: [{id, key, tenant}]`",
                    )
                ]
            )
        encoded = (secret.get("data") or {}).get(API_KEYS_FIELD)
        if encoded is None:
            raise InvalidInput(
                [
                    InputError(
                        source,
                        policy.ref,
                        "spec.gateway.apiKeySecret",
                        f"Secret {name!r} has no {API_KEYS_FIELD!r} entry: add one holding "
                        "`keys: [{id, key, tenant}]`",
                    )
                ]
            )
        try:
            data = yaml.safe_load(base64.b64decode(encoded))
        except (ValueError, yaml.YAMLError):
            raise InvalidInput(
                [
                    InputError(
                        source, policy.ref, API_KEYS_FIELD, "is not valid YAML (content not shown)"
                    )
                ]
            ) from None
        return parse_api_keys(data, source)

    async def _service_addresses(self, pool: ModelPool) -> dict[str, tuple[str, int]]:
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

    async def _conditions(self, body: Mapping[str, Any], now: datetime, conditions) -> None:
        meta = body["metadata"]
        previous = (body.get("status") or {}).get("conditions")
        patch = {"conditions": merge_conditions(previous, conditions, now, meta.get("generation"))}
        await self.kube.merge_patch(
            object_path(object_ref(body)), {"status": patch}, subresource="status"
        )


def _invalid(reason: str, errors) -> list[PlanCondition]:
    return [PlanCondition("Ready", "False", reason, errors_message(errors))]
