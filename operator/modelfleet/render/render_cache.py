"""What the operator keeps between cycles so that a cycle renders in proportion to what
changed: each pool's workloads, each policy's routing table and gateway, and what is
derived from objects that come back unchanged (a pool's previous plan from the status the
operator wrote, the SLO targets and reference checks from specs, a table's routes as the
status shows them). `desired()` gives the same result with or without it; memory is one
entry per pool and per policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelfleet.api.load import InputError
from modelfleet.api.routingpolicy import EffectiveRoute, RoutingPolicyStatus
from modelfleet.plan.scaling.types import PreviousPlan
from modelfleet.render.gateway_cache import GatewayRenderCache
from modelfleet.render.memo import IdentityMemo, ValueMemo
from modelfleet.render.routing_cache import RoutingCache
from modelfleet.render.workload_cache import WorkloadRenderCache


@dataclass
class RenderCache:
    gateways: GatewayRenderCache = field(default_factory=GatewayRenderCache)
    workloads: WorkloadRenderCache = field(default_factory=WorkloadRenderCache)
    routing: RoutingCache = field(default_factory=RoutingCache)
    # Per pool:
    previous_plans: IdentityMemo[PreviousPlan | None] = field(default_factory=IdentityMemo)
    slo_targets: IdentityMemo[dict[str, Any]] = field(default_factory=IdentityMemo)
    # Per policy:
    references: IdentityMemo[list[InputError]] = field(default_factory=IdentityMemo)
    # A table's routes as the status models hold them and as the status writes them.
    route_statuses: IdentityMemo[tuple[list[EffectiveRoute], list[dict[str, Any]]]] = field(
        default_factory=IdentityMemo
    )
    # The status, while its routes, budgets, conditions and hash stay what they were.
    policy_statuses: ValueMemo[RoutingPolicyStatus] = field(default_factory=ValueMemo)
    # The partial status of a policy without a gateway to publish: its table's routes alone.
    planned_routes: IdentityMemo[RoutingPolicyStatus] = field(default_factory=IdentityMemo)

    def __len__(self) -> int:
        return len(self.gateways) + len(self.workloads) + len(self.routing)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A deleted resource: drop what was rendered for it."""
        key = (namespace, name)
        if kind == "ModelPool":
            self.workloads.forget(namespace, name)
            self.previous_plans.forget(key)
            self.slo_targets.forget(key)
        elif kind == "RoutingPolicy":
            self.gateways.forget(namespace, name)
            self.routing.forget(namespace, name)
            self.references.forget(key)
            self.route_statuses.forget(key)
            self.policy_statuses.forget(key)
            self.planned_routes.forget(key)
