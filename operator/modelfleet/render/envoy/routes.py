"""RDS: the route configuration. Everything that changes at run time lives here (weights,
API keys, tenants, classification rules), because Envoy swaps a route table per request
without draining connections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import ClassificationRule, RoutingPolicy
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.render.envoy import matching
from modelfleet.render.envoy.errors import error_body, invalid_request
from modelfleet.render.envoy.fallback import first_choices, spec_route
from modelfleet.render.envoy.lua import gateway_script
from modelfleet.render.envoy.names import (
    API_KEY_HEADERS,
    BEARER_SPELLINGS,
    CLASSIFY_CHARS_HEADER,
    CLASSIFY_HEADERS,
    CLASSIFY_LAST_USER_HEADER,
    CLASSIFY_SYSTEM_HEADER,
    CLASSIFY_TOKENS_HEADER,
    CLIENT_ID_HEADER,
    DEFAULT_RULE,
    INPUT_FIELD_BY_PATH,
    MODELS_PATH,
    ROUTE_CONFIG_NAME,
    ROUTE_NAMESPACE,
    RULE_KEY,
    RULE_RESPONSE_HEADER,
    TASK_TYPE_KEY,
    TASK_TYPE_RESPONSE_HEADER,
    virtual_cluster_name,
)
from modelfleet.render.envoy.xds import any_of, duration, filter_name

ROUTE_CONFIG_TYPE = "envoy.config.route.v3.RouteConfiguration"
JSON_CONTENT_TYPE = {
    "header": {"key": "content-type", "value": "application/json"},
    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
}
# range_match's end is exclusive; "no upper bound" for a prompt length.
NO_MAXIMUM = 2**62


def route_configuration(
    table: RoutingTable, pool: ModelPool, policy: RoutingPolicy, api_keys: Sequence[ApiKey]
) -> dict[str, Any]:
    routes = [models_route(table, pool), method_not_allowed_route()]
    routes.extend(classification_routes(table, policy))
    for table_route in table.routes:
        routes.extend(table_routes(table_route, policy))
    routes.extend(default_routes(table, policy))
    routes.extend([no_route_route(), unknown_path_route()])
    return {
        "@type": any_of(ROUTE_CONFIG_TYPE),
        "name": ROUTE_CONFIG_NAME,
        # The client's key must never reach a model server, whichever header carried it, nor
        # the prompt text copied into headers for classification rules.
        "request_headers_to_remove": [*API_KEY_HEADERS, *CLASSIFY_HEADERS],
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
                "typed_per_filter_config": per_filter_config(policy, api_keys),
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


def per_filter_config(policy: RoutingPolicy, api_keys: Sequence[ApiKey]) -> dict[str, Any]:
    tenants = {key.id: key.tenant for key in api_keys}
    return {
        filter_name("api_key_auth"): {
            "@type": any_of("envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute"),
            "credentials": credentials(api_keys),
            "forwarding": {"header": CLIENT_ID_HEADER, "hide_credentials": True},
        },
        filter_name("lua"): {
            "@type": any_of("envoy.extensions.filters.http.lua.v3.LuaPerRoute"),
            "source_code": {"inline_string": gateway_script(tenants, policy.spec.classification)},
        },
    }


def table_routes(route: TableRoute, policy: RoutingPolicy) -> list[dict[str, Any]]:
    """The Envoy routes for one routing-table route (one per way it can match)."""
    action = route_action(route, policy)
    return [
        {"name": route.name, "match": match, **action, "stat_prefix": route.name}
        for match in matching.route_matches(route.match)
    ]


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


def rule_headers(rule: ClassificationRule) -> list[dict[str, Any]]:
    """The header matchers that mean `rule` (the Lua script puts the texts in headers)."""
    if rule.prompt_length is not None:
        length = rule.prompt_length
        name = CLASSIFY_TOKENS_HEADER if length.unit == "tokens" else CLASSIFY_CHARS_HEADER
        end = NO_MAXIMUM if length.max is None else length.max + 1
        return [{"name": name, "range_match": {"start": length.min or 0, "end": end}}]
    name = CLASSIFY_LAST_USER_HEADER if rule.in_ == "lastUserMessage" else CLASSIFY_SYSTEM_HEADER
    if rule.keywords:
        found = "(?i).*(?:" + "|".join(matching.re2_literal(k) for k in rule.keywords) + ").*"
    else:
        found = f".*(?:{rule.regex}).*"
    return [{"name": name, "string_match": {"safe_regex": {"regex": found}}}]


def _classified(rule_name: str, task_type: str | None) -> dict[str, Any]:
    """Route metadata (for the audit log) and response headers naming the rule."""
    values = {RULE_KEY: rule_name}
    headers = [{"header": {"key": RULE_RESPONSE_HEADER, "value": rule_name}}]
    if task_type is not None:
        values[TASK_TYPE_KEY] = task_type
        headers.append({"header": {"key": TASK_TYPE_RESPONSE_HEADER, "value": task_type}})
    return {
        "metadata": {"filter_metadata": {ROUTE_NAMESPACE: values}},
        "response_headers_to_add": [
            {**h, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for h in headers
        ],
    }


def _with_json_content_type(labels: dict[str, Any]) -> dict[str, Any]:
    return {
        **labels,
        "response_headers_to_add": [JSON_CONTENT_TYPE, *labels["response_headers_to_add"]],
    }


def classification_routes(table: RoutingTable, policy: RoutingPolicy) -> list[dict[str, Any]]:
    """For each rule in order: the routes a request with the rule's task type (and no model)
    would take, each also requiring the rule to match; then, if all of those depend on
    headers, a 404 so that a later rule cannot claim the request."""
    classification = policy.spec.classification
    if classification is None:
        return []
    routes = []
    for rule in classification.rules:
        predicate = rule_headers(rule)
        labels = _classified(rule.name, rule.task_type)
        unconditional = False
        for table_route in table.routes:
            spec = table_route.match
            if spec.models or (spec.task_types and rule.task_type not in spec.task_types):
                continue
            headers = [matching.header(name, (value,)) for name, value in spec.headers]
            match = {"safe_regex": {"regex": matching.GENERATION_PATH_REGEX}}
            match["headers"] = [*headers, *predicate]
            routes.append(
                {
                    "name": table_route.name,
                    "match": match,
                    **route_action(table_route, policy),
                    "stat_prefix": table_route.name,
                    **labels,
                }
            )
            if not headers:
                unconditional = True
                break
        if not unconditional:
            routes.append(
                {
                    "name": f"rule-{rule.name}-no-route",
                    "match": {
                        "safe_regex": {"regex": matching.GENERATION_PATH_REGEX},
                        "headers": predicate,
                    },
                    "direct_response": {
                        "status": 404,
                        "body": {
                            "inline_string": invalid_request(
                                f"classification rule {rule.name!r} made this a "
                                f"{rule.task_type!r} request, and no route serves one with "
                                "these headers",
                                "model_not_found",
                                "task_type",
                            )
                        },
                    },
                    **_with_json_content_type(labels),
                }
            )
    return routes


def default_routes(table: RoutingTable, policy: RoutingPolicy) -> list[dict[str, Any]]:
    """A request that named neither task type nor model, that no rule and no route took,
    goes to the default route (the script marked it with the prompt-length header)."""
    classification = policy.spec.classification
    if classification is None or classification.default_route is None:
        return []
    target = next(
        (r for r in table.routes if r.name == classification.default_route and not r.degraded_from),
        None,
    )
    if target is None:
        return []
    return [
        {
            "name": target.name,
            "match": {
                "safe_regex": {"regex": matching.GENERATION_PATH_REGEX},
                "headers": [{"name": CLASSIFY_CHARS_HEADER, "present_match": True}],
            },
            **route_action(target, policy),
            "stat_prefix": target.name,
            **_classified(DEFAULT_RULE, None),
        }
    ]


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
