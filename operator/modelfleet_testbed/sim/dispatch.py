"""What the gateway does with each kind of request under one routing table: the first
route that matches it (as Envoy's route table), and the weighted backends of that route."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate

from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable
from modelfleet_testbed.sim.workload import RequestClass

# (route index in the policy, 1 if a degrade companion, variant indexes, cumulative weights)
Dispatch = tuple[int, int, tuple[int, ...], tuple[int, ...]]


def class_matches(match: RouteMatchSpec, request: RequestClass) -> bool:
    """Envoy's match of one table route (see envoy/matching.py): any listed task type,
    any listed model, every listed header."""
    if match.task_types and request.task_type not in match.task_types:
        return False
    if match.models and request.model not in match.models:
        return False
    headers = dict(request.headers)
    return all(headers.get(name.lower()) == value for name, value in match.headers)


def dispatch_table(
    table: RoutingTable,
    classes: Sequence[RequestClass],
    variant_index: Mapping[str, int],
    route_index: Mapping[str, int],
) -> list[Dispatch | None]:
    """Per request class, where it goes; None when no route matches (Envoy's 404).
    A degrade companion counts as the route it shadows."""
    dispatch: list[Dispatch | None] = []
    for request in classes:
        route = next((r for r in table.routes if class_matches(r.match, request)), None)
        if route is None:
            dispatch.append(None)
            continue
        variants = tuple(variant_index[b.variant] for b in route.backends)
        cumulative = tuple(accumulate(b.weight for b in route.backends))
        name = route.degraded_from or route.name
        dispatch.append(
            (route_index[name], int(route.degraded_from is not None), variants, cumulative)
        )
    return dispatch
