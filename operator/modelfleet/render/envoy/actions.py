"""What a route does with a request it matched: the weighted first choices (each with its
fallback), the timeouts, the one retry and its budget, the hedge at the first-byte
timeout."""

from __future__ import annotations

from typing import Any

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.routing.table import TableRoute
from modelfleet.render.envoy.fallback import first_choices, spec_route
from modelfleet.render.envoy.xds import any_of, duration


def route_timeout_seconds(route: TableRoute, policy: RoutingPolicy) -> float:
    spec = spec_route(policy, route)
    if spec is not None and spec.slo is not None and spec.slo.e2e_seconds is not None:
        return spec.slo.e2e_seconds
    return policy.spec.gateway.timeouts.route_seconds


def route_action(route: TableRoute, policy: RoutingPolicy) -> dict[str, Any]:
    choices = first_choices(policy, route)
    if not choices:
        return {
            "direct_response": {
                "status": 503,
                "body": {"inline_string": f"route {route.name!r} has no backend with weight"},
            }
        }
    timeout = duration(route_timeout_seconds(route, policy))
    fallback = policy.spec.gateway.fallback
    retry: dict[str, Any] = {
        # 5xx, refused or reset connections, and an attempt past its per-try timeout. Envoy
        # never retries once it has sent response bytes to the client.
        "retry_on": "5xx",
        "num_retries": 1,
        "per_try_timeout": duration(fallback.first_byte_seconds),
    }
    if any(choice.fallback is not None for choice in choices):
        # A fallback cluster's variants are its priorities 0 and 1: the retry skips the
        # priority already tried, so it goes to the fallback.
        retry["retry_priority"] = {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": any_of(
                    "envoy.extensions.retry.priority.previous_priorities.v3"
                    ".PreviousPrioritiesConfig"
                ),
                "update_frequency": 1,
            },
        }
    return {
        "route": {
            "weighted_clusters": {
                "clusters": [
                    {"name": choice.cluster, "weight": choice.weight} for choice in choices
                ]
            },
            # The whole request, a stream included; a non-streamed answer is silent until it
            # is complete, so the idle timeout is the same.
            "timeout": timeout,
            "idle_timeout": timeout,
            "retry_policy": retry,
            # At the per-try timeout the first attempt keeps running beside the retry: a slow
            # answer that is merely long is not thrown away.
            "hedge_policy": {"hedge_on_per_try_timeout": True},
        }
    }
