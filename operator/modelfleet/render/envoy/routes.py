"""RDS: the route configuration. Everything that changes at run time lives here (weights,
API keys, tenants, classification rules), because Envoy swaps a route table per request
without draining connections."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.budgets import Gate
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.render.envoy import matching
from modelfleet.render.envoy.actions import route_action
from modelfleet.render.envoy.classification import classification_routes, default_routes
from modelfleet.render.envoy.errors import JSON_CONTENT_TYPE, error_body, invalid_request
from modelfleet.render.envoy.lua import gateway_script
from modelfleet.render.envoy.names import (
    API_KEY_HEADERS,
    BEARER_SPELLINGS,
    BUDGET_HEADER,
    CLASSIFY_HEADERS,
    CLIENT_ID_HEADER,
    INPUT_FIELD_BY_PATH,
    MODELS_PATH,
    ROUTE_CONFIG_NAME,
    virtual_cluster_name,
)
from modelfleet.render.envoy.xds import any_of, filter_name

ROUTE_CONFIG_TYPE = "envoy.config.route.v3.RouteConfiguration"


def route_configuration(
    table: RoutingTable,
    pool: ModelPool,
    policy: RoutingPolicy,
    api_keys: Sequence[ApiKey],
    gates: Mapping[str, Gate] | None = None,
    filter_config: Any = None,
    routes_of: Callable[[TableRoute], list[Any]] | None = None,
) -> dict[str, Any]:
    """`gates`: the API keys over a spent budget (in the Lua script's settings, so that a
    budget's flip is a routes swap like a weight change). `filter_config`: the
    `per_filter_config` of these keys and gates (or what stands for it in the document),
    when the caller has it already;
    `routes_of`: each table route's Envoy routes, when the caller keeps them."""
    routes = [models_route(table, pool), method_not_allowed_route()]
    routes.extend(classification_routes(table, policy))
    for table_route in table.routes:
        routes.extend(routes_of(table_route) if routes_of else table_routes(table_route, policy))
    routes.extend(default_routes(table, policy))
    routes.extend([no_route_route(), unknown_path_route()])
    return {
        "@type": any_of(ROUTE_CONFIG_TYPE),
        "name": ROUTE_CONFIG_NAME,
        # The client's key must never reach a model server, whichever header carried it, nor
        # the prompt text copied into headers for classification rules, nor the budget mark.
        "request_headers_to_remove": [*API_KEY_HEADERS, *CLASSIFY_HEADERS, BUDGET_HEADER],
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
                "typed_per_filter_config": filter_config
                or per_filter_config(policy, api_keys, gates),
            }
        ],
    }


def credentials(api_keys: Sequence[ApiKey]) -> list[dict[str, str]]:
    """Each key as api_key_auth sees it: bare (x-api-key, `Authorization: Bearer <key>`) and
    with the other spellings of the scheme, which the filter leaves on the value."""
    entries = []
    for key in sorted(api_keys, key=lambda k: k.id):
        entries.append({"key": key.key, "client": key.id})
        entries.extend({"key": scheme + key.key, "client": key.id} for scheme in BEARER_SPELLINGS)
    return entries


def per_filter_config(
    policy: RoutingPolicy, api_keys: Sequence[ApiKey], gates: Mapping[str, Gate] | None = None
) -> dict[str, Any]:
    tenants = {key.id: key.tenant for key in api_keys}
    return {
        filter_name("api_key_auth"): {
            "@type": any_of("envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute"),
            "credentials": credentials(api_keys),
            "forwarding": {"header": CLIENT_ID_HEADER, "hide_credentials": True},
        },
        filter_name("lua"): {
            "@type": any_of("envoy.extensions.filters.http.lua.v3.LuaPerRoute"),
            "source_code": {
                "inline_string": gateway_script(tenants, policy.spec.classification, gates)
            },
        },
    }


def table_routes(route: TableRoute, policy: RoutingPolicy) -> list[dict[str, Any]]:
    """The Envoy routes for one routing-table route (one per way it can match)."""
    action = route_action(route, policy)
    return [
        {"name": route.name, "match": match, **action, "stat_prefix": route.name}
        for match in matching.route_matches(route.match)
    ]


def models_route(table: RoutingTable, pool: ModelPool) -> dict[str, Any]:
    """GET /v1/models lists the model names a client can send in `model` and get routed."""
    names = tuple(dict.fromkeys(m for route in table.routes for m in route.match.models))
    return {
        "name": "models",
        "match": {"path": MODELS_PATH, "headers": [matching.header(":method", ("GET",))]},
        "direct_response": {
            "status": 200,
            "body": {"inline_string": models_body(names, f"{pool.namespace}/{pool.name}")},
        },
        "response_headers_to_add": [JSON_CONTENT_TYPE],
    }


@lru_cache(maxsize=4096)
def models_body(names: tuple[str, ...], owner: str) -> str:
    """The model list's JSON, once per list (a table's new shape rarely changes its names)."""
    body = {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": owner} for n in names],
    }
    return json.dumps(body, separators=(",", ":"))


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
