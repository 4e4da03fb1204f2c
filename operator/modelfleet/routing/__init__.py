"""Pure: (RoutingPolicy, ModelPool, observations) -> RoutingTable."""

from .planner import plan_routing
from .serialize import routing_table_json, table_hash
from .table import RouteMatchSpec, RoutingTable, TableRoute, WeightedBackend

__all__ = [
    "RouteMatchSpec",
    "RoutingTable",
    "TableRoute",
    "WeightedBackend",
    "plan_routing",
    "routing_table_json",
    "table_hash",
]
