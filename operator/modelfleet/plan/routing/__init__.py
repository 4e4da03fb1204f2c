"""Pure: (RoutingPolicy, ModelPool, observations) -> RoutingTable."""

from modelfleet.plan.routing.planner import plan_routing
from modelfleet.plan.routing.serialize import routing_table_json, table_hash
from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable, TableRoute, WeightedBackend

__all__ = [
    "RouteMatchSpec",
    "RoutingTable",
    "TableRoute",
    "WeightedBackend",
    "plan_routing",
    "routing_table_json",
    "table_hash",
]
