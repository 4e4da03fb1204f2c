"""Publishing a gateway the core rendered: validate with the real Envoy binary, and only
then write the Secret (routes) and the ConfigMap (the rest). An invalid render changes
nothing in the cluster: the last good config keeps serving, and the policy's status says
why the new one is not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.kube import KubeClient
from modelfleet.apply.validate import EnvoyNotFound, InvalidEnvoyConfig, validate_with_envoy
from modelfleet.render.desired import Desired, refuse_gateway
from modelfleet.render.gateway import GatewayConfig

log = structlog.get_logger(__name__)


class GatewayPublisher:
    def __init__(
        self,
        kube: KubeClient,
        validate: Callable[[Mapping[str, str]], None] = validate_with_envoy,
    ):
        self.kube = kube
        self.validate = validate
        self._refused: dict[tuple[str, str], tuple[str, str, str]] = {}

    async def publish(self, gateway: GatewayConfig, policy: RoutingPolicy, result: Desired):
        """Write `gateway` unless the policy's status says it is already published; when
        Envoy refuses it, amend `result` (the policy's status and Events) instead."""
        logger = log.bind(namespace=policy.namespace, name=policy.name, kind="RoutingPolicy")
        published = policy.status.config_hash if policy.status else None
        if gateway.config_hash == published:
            return
        key = (policy.namespace, policy.name)
        refused = self._refused.get(key)
        if refused is not None and refused[0] == gateway.config_hash:
            # Envoy's verdict on these exact files is known: not worth another envoy run.
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
        logger.info("gateway.published", config_hash=gateway.config_hash)
