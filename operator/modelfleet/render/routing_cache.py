"""Each policy's routing table, planned again only when what routing reads has changed.

A table is a pure function of the policy's spec, the pool's spec, what routing reads of
each variant's observation (`routed_observations`: not the sample time, which moves every
refresh) and last cycle's weights. Most refreshes change none of these for most policies,
so the table they gave last time is given again, the same object (the gateway render then
sees at once that nothing changed); so is a table planned again that comes out equal.
Specs are compared by identity: the parse cache hands out the same spec object until the
resource's generation moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.observation import Observations, VariantObservation
from modelfleet.plan.routing.planner import plan_routing, routed_observations
from modelfleet.plan.routing.table import RoutingTable


@dataclass(frozen=True)
class _Planned:
    policy_spec: Any
    pool_spec: Any
    routed: tuple[VariantObservation | None, ...]
    previous: Mapping[str, Mapping[str, int]]
    table: RoutingTable


class RoutingCache:
    """One entry per policy: the inputs of its last table, and the table."""

    def __init__(self) -> None:
        self._planned: dict[tuple[str, str], _Planned] = {}

    def __len__(self) -> int:
        return len(self._planned)

    def table(
        self,
        policy: RoutingPolicy,
        pool: ModelPool,
        observations: Observations,
        previous: Mapping[str, Mapping[str, int]],
    ) -> RoutingTable:
        """plan_routing(policy, pool, observations, previous), references checked."""
        key = (policy.namespace, policy.name)
        routed = routed_observations(pool, observations)
        last = self._planned.get(key)
        same_specs = (
            last is not None and last.policy_spec is policy.spec and last.pool_spec is pool.spec
        )
        if same_specs and last.routed == routed and last.previous == previous:
            return last.table
        table = plan_routing(
            policy, pool, observations, previous, references_checked=True, routed=routed
        )
        if same_specs and table == last.table:
            # Moved numbers, the same routes and weights (most refreshes): the same object
            # again, so that what is made from the table is not made again either.
            table = last.table
        self._planned[key] = _Planned(policy.spec, pool.spec, routed, previous, table)
        return table

    def forget(self, namespace: str, name: str) -> None:
        self._planned.pop((namespace, name), None)
