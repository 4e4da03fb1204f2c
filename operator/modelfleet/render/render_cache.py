"""What the operator keeps between cycles so that a cycle renders in proportion to what
changed: each pool's workloads, each policy's routing table and gateway. `desired()` gives the same result
with or without it; memory is one entry per pool and per policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelfleet.render.gateway_cache import GatewayRenderCache
from modelfleet.render.routing_cache import RoutingCache
from modelfleet.render.workload_cache import WorkloadRenderCache


@dataclass
class RenderCache:
    gateways: GatewayRenderCache = field(default_factory=GatewayRenderCache)
    workloads: WorkloadRenderCache = field(default_factory=WorkloadRenderCache)
    routing: RoutingCache = field(default_factory=RoutingCache)

    def __len__(self) -> int:
        return len(self.gateways) + len(self.workloads) + len(self.routing)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A deleted resource: drop what was rendered for it."""
        if kind == "ModelPool":
            self.workloads.forget(namespace, name)
        elif kind == "RoutingPolicy":
            self.gateways.forget(namespace, name)
            self.routing.forget(namespace, name)
