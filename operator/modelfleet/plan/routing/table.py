"""The routing table: what the gateway should do, before it is Envoy config.

A route and its backends are NamedTuples: every refresh plans them anew for every policy
whose readiness or load moved (see plan/scaling/types.py for why not frozen dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class WeightedBackend(NamedTuple):
    variant: str
    weight: int  # 1..100; a route's weights sum to 100 (backends with no share are left out)


class RouteMatchSpec(NamedTuple):
    task_types: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # all must match (name, exact value)


class TableRoute(NamedTuple):
    name: str
    match: RouteMatchSpec
    backends: tuple[WeightedBackend, ...]
    degraded_from: str | None = None  # set on a degrade companion: the route it shadows
    # A budget companion: the route's cheaper backends, for API keys over a degrade budget.
    budget: bool = False
    note: str = ""  # why the weights differ from the spec, for status and people


@dataclass(frozen=True, slots=True)
class RoutingTable:
    namespace: str
    policy: str
    pool: str
    routes: tuple[TableRoute, ...] = field(default_factory=tuple)
