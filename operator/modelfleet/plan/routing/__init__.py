"""Pure: (RoutingPolicy, ModelPool, observations) -> RoutingTable."""
