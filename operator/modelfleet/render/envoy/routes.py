"""RDS: the route configuration. Everything that changes at run time lives here (weights,
API keys, tenants), because Envoy swaps a route table per request without draining
connections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.render.envoy import matching
from modelfleet.render.envoy.errors import error_body, invalid_request
from modelfleet.render.envoy.lua import input_check_script
from modelfleet.render.envoy.names import (
    API_KEY_HEADERS,
    CLIENT_ID_HEADER,
    INPUT_FIELD_BY_PATH,
    MODELS_PATH,
    ROUTE_CONFIG_NAME,
    virtual_cluster_name,
)
from modelfleet.render.envoy.xds import any_of, filter_name

ROUTE_CONFIG_TYPE = "envoy.config.route.v3.RouteConfiguration"
JSON_CONTENT_TYPE = {
    "header": {"key": "content-type", "value": "application/json"},
    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
}


def route_configuration(
    table: RoutingTable, pool: ModelPool, api_keys: Sequence[ApiKey]
) -> dict[str, Any]:
    routes = [models_route(table, pool), method_not_allowed_route()]
    for table_route in table.routes:
        routes.extend(table_routes(table_route))
    routes.extend([no_route_route(), unknown_path_route()])
    return {
        "@type": any_of(ROUTE_CONFIG_TYPE),
        "name": ROUTE_CONFIG_NAME,
        # The client's key must never reach a model server, whichever header carried it.
        "request_headers_to_remove": list(API_KEY_HEADERS),
        "virtual_hosts": [
            {
                "name": table.policy,
                "domains": ["*"],
                "routes": routes,
                "virtual_clusters": [
                    {
                        "name": virtual_cluster_name(key.tenant, key.id),
                        "headers": [matching.header(CLIENT_ID_HEADER, (key.id,))],
                    }
                    for key in sorted(api_keys, key=lambda k: k.id)
                ],
                "typed_per_filter_config": per_filter_config(api_keys),
            }
        ],
    }


def per_filter_config(api_keys: Sequence[ApiKey]) -> dict[str, Any]:
    return {
        filter_name("api_key_auth"): {
            "@type": any_of("envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute"),
            "credentials": [
                {"key": key.key, "client": key.id} for key in sorted(api_keys, key=lambda k: k.id)
            ],
            "forwarding": {"header": CLIENT_ID_HEADER, "hide_credentials": True},
        },
        filter_name("lua"): {
            "@type": any_of("envoy.extensions.filters.http.lua.v3.LuaPerRoute"),
            "source_code": {
                "inline_string": input_check_script({key.id: key.tenant for key in api_keys})
            },
        },
    }


def table_routes(route: TableRoute) -> list[dict[str, Any]]:
    """The Envoy routes for one routing-table route (one per way it can match)."""
    action = route_action(route)
    return [
        {"name": route.name, "match": match, **action, "stat_prefix": route.name}
        for match in matching.route_matches(route.match)
    ]


def route_action(route: TableRoute) -> dict[str, Any]:
    clusters = [{"name": b.variant, "weight": b.weight} for b in route.backends if b.weight > 0]
    if not clusters:
        return {
            "direct_response": {
                "status": 503,
                "body": {"inline_string": f"route {route.name!r} has no backend with weight"},
            }
        }
    return {
        "route": {
            "weighted_clusters": {"clusters": clusters},
            # Generation can run for many minutes; the stream idle timeout still ends a
            # request whose backend stops sending.
            "timeout": "0s",
            # A replica that is shutting down refuses with 503 before any work: safe to retry.
            "retry_policy": {
                "retry_on": "connect-failure,refused-stream,reset-before-request,"
                "retriable-status-codes",
                "retriable_status_codes": [503],
                "num_retries": 2,
            },
        }
    }


def models_route(table: RoutingTable, pool: ModelPool) -> dict[str, Any]:
    """GET /v1/models lists the model names a client can send in `model` and get routed."""
    names = list(dict.fromkeys(m for route in table.routes for m in route.match.models))
    owner = f"{pool.namespace}/{pool.name}"
    body = {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": owner} for n in names],
    }
    return {
        "name": "models",
        "match": {"path": MODELS_PATH, "headers": [matching.header(":method", ("GET",))]},
        "direct_response": {
            "status": 200,
            "body": {"inline_string": json.dumps(body, separators=(",", ":"))},
        },
        "response_headers_to_add": [JSON_CONTENT_TYPE],
    }


def method_not_allowed_route() -> dict[str, Any]:
    return {
        "name": "method-not-allowed",
        "match": {
            "safe_regex": {"regex": matching.INFERENCE_PATH_REGEX},
            "headers": [{**matching.header(":method", ("POST",)), "invert_match": True}],
        },
        "direct_response": {
            "status": 405,
            "body": {
                "inline_string": invalid_request("use POST for this endpoint", "method_not_allowed")
            },
        },
        "response_headers_to_add": [
            JSON_CONTENT_TYPE,
            {
                "header": {"key": "allow", "value": "POST"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            },
        ],
    }


def no_route_route() -> dict[str, Any]:
    return {
        "name": "no-route",
        "match": {"safe_regex": {"regex": matching.INFERENCE_PATH_REGEX}},
        "direct_response": {
            "status": 404,
            "body": {
                "inline_string": invalid_request(
                    "no route for this request: set 'model' or 'task_type' in the body "
                    "(or the x-task-type header) to one this gateway serves; "
                    f"GET {MODELS_PATH} lists the models",
                    "model_not_found",
                    "model",
                )
            },
        },
        "response_headers_to_add": [JSON_CONTENT_TYPE],
    }


def unknown_path_route() -> dict[str, Any]:
    served = ", ".join([*INPUT_FIELD_BY_PATH, MODELS_PATH])
    return {
        "name": "unknown-path",
        "match": {"prefix": "/"},
        "direct_response": {
            "status": 404,
            "body": {
                "inline_string": error_body(
                    f"unknown path: this gateway serves {served}",
                    "invalid_request_error",
                    "unknown_url",
                )
            },
        },
        "response_headers_to_add": [JSON_CONTENT_TYPE],
    }
