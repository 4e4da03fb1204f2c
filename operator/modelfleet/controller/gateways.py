"""Publishing a gateway the core rendered: validate with the real Envoy binary, and only
then write the Secret (routes) and the ConfigMap (the rest). An invalid render changes
nothing in the cluster: the last good config keeps serving, and the policy's status says
why the new one is not.

The two objects are compared with what they should hold every cycle: one deleted or edited
by hand is put back within a refresh (new gateway pods could not start without them), with
a Warning Event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.kube import KubeClient, resource_path
from modelfleet.apply.validate import EnvoyNotFound, InvalidEnvoyConfig, validate_with_envoy
from modelfleet.render.desired import Desired, Event, refuse_gateway
from modelfleet.render.gateway import GatewayConfig
from modelfleet.render.inputs import ObjectRef

log = structlog.get_logger(__name__)


class GatewayPublisher:
    def __init__(
        self,
        kube: KubeClient,
        validate: Callable[[Mapping[str, str]], None] = validate_with_envoy,
    ):
        self.kube = kube
        self.validate = validate
        # Envoy's verdict on a policy's last refused render: not worth another envoy run.
        self._refused: dict[tuple[str, str], tuple[str, str, str]] = {}

    async def publish(self, gateway: GatewayConfig, policy: RoutingPolicy, result: Desired):
        """Write `gateway` unless the cluster holds it already; when Envoy refuses it, amend
        `result` (the policy's status and Events) instead."""
        logger = log.bind(namespace=policy.namespace, name=policy.name, kind="RoutingPolicy")
        published = policy.status.config_hash if policy.status else None
        names = {"ConfigMap": gateway.config_map_name, "Secret": gateway.secret_name}
        live = {
            "ConfigMap": await self.kube.get(
                resource_path("v1", "configmaps", gateway.namespace, names["ConfigMap"])
            ),
            "Secret": await self.kube.get(
                resource_path("v1", "secrets", gateway.namespace, names["Secret"])
            ),
        }
        # Compared with the files: the objects are built only to be written.
        kept = {
            "ConfigMap": gateway.in_config_map(live["ConfigMap"]),
            "Secret": gateway.in_secret(live["Secret"]),
        }
        if gateway.config_hash == published and all(kept.values()):
            return
        key = (policy.namespace, policy.name)
        if gateway.config_hash != published:
            refused = self._refused.get(key)
            if refused is not None and refused[0] == gateway.config_hash:
                refuse_gateway(result, policy, refused[1], refused[2])
                return
            try:
                await asyncio.to_thread(self.validate, gateway.files)
            except (InvalidEnvoyConfig, EnvoyNotFound) as err:
                reason = "EnvoyRejectedConfig" if isinstance(err, InvalidEnvoyConfig) else "NoEnvoy"
                refuse_gateway(result, policy, reason, str(err)[:2000])
                self._refused[key] = (gateway.config_hash, reason, str(err)[:2000])
                logger.error("gateway.invalid_config", error=str(err)[:500])
                return
        # Clusters and routes travel in two objects: the sidecar applies them together.
        await self.kube.apply(gateway.secret)
        await self.kube.apply(gateway.config_map)
        self._refused.pop(key, None)
        if gateway.config_hash == published:
            what = ", ".join(
                f"{kind} {names[kind]} {'deleted' if live[kind] is None else 'edited'}"
                for kind in ("ConfigMap", "Secret")
                if not kept[kind]
            )
            message = f"{what} by hand: restored config {gateway.config_hash}"
            result.events.append(
                Event(ObjectRef.of(policy), "Warning", "GatewayConfigRestored", message)
            )
            logger.warning("gateway.restored", config_hash=gateway.config_hash, what=what)
        else:
            logger.info("gateway.published", config_hash=gateway.config_hash)

    def forget(self, namespace: str, name: str) -> None:
        self._refused.pop((namespace, name), None)
