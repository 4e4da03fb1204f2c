"""Where a failed request gets its one retry: the variant each first choice falls back to,
and the clusters that carry the pair (Envoy retries onto another cluster only through an
aggregate cluster of the two, tried in order)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from modelfleet.api.routingpolicy import Route, RoutingPolicy
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.render.envoy.names import fallback_cluster_name


class FirstChoice(NamedTuple):
    """A variant a route sends requests to, and where their retry goes (None: the same
    variant again, e.g. another replica behind its Service)."""

    variant: str
    weight: int
    fallback: str | None

    @property
    def cluster(self) -> str:
        if self.fallback is None:
            return self.variant
        return fallback_cluster_name(self.variant, self.fallback)


def spec_route(policy: RoutingPolicy, route: TableRoute) -> Route | None:
    """The policy route a table route comes from (a degrade companion: the route it shadows)."""
    name = route.degraded_from or route.name
    return next((r for r in policy.spec.routes if r.name == name), None)


def first_choices(policy: RoutingPolicy, route: TableRoute) -> list[FirstChoice]:
    """The route's weighted variants, each with its fallback: the route's declared fallback,
    else (not for a degrade companion) its other backend with the largest weight. A budget
    companion retries within its own (cheaper) backends only."""
    declared = spec_route(policy, route)
    declared_fallback = declared.fallback if declared else None
    live = [b for b in route.backends if b.weight > 0]
    if route.budget and declared_fallback not in {b.variant for b in live}:
        declared_fallback = None
    choices = []
    for backend in live:
        fallback = declared_fallback if declared_fallback != backend.variant else None
        if fallback is None and (route.degraded_from is None or route.budget):
            others = [b for b in live if b.variant != backend.variant]
            # max() keeps the first of equals: ties go to the earlier backend.
            fallback = max(others, key=lambda b: b.weight).variant if others else None
        choices.append(FirstChoice(backend.variant, backend.weight, fallback))
    return choices


def fallback_pairs(policy: RoutingPolicy, table: RoutingTable) -> list[tuple[str, str]]:
    """Every (first choice, fallback) some route uses, in a stable order."""
    pairs: Iterable[tuple[str, str]] = (
        (choice.variant, choice.fallback)
        for route in table.routes
        for choice in first_choices(policy, route)
        if choice.fallback is not None
    )
    return sorted(set(pairs))
