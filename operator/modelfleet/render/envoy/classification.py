"""Routes for requests that name neither a task type nor a model: the policy's
classification rules, then its default route. The Lua script copies the texts the rules
look at (a bounded prefix) and the prompt's length into request headers; the rules are
Envoy route matchers over them (RE2 regular expressions, integer ranges), placed before the
policy's own routes."""

from __future__ import annotations

from typing import Any

from modelfleet.api.routingpolicy import ClassificationRule, RoutingPolicy
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.render.envoy import matching
from modelfleet.render.envoy.actions import route_action
from modelfleet.render.envoy.errors import JSON_CONTENT_TYPE, invalid_request
from modelfleet.render.envoy.names import (
    CLASSIFY_CHARS_HEADER,
    CLASSIFY_LAST_USER_HEADER,
    CLASSIFY_SYSTEM_HEADER,
    CLASSIFY_TOKENS_HEADER,
    DEFAULT_RULE,
    ROUTE_NAMESPACE,
    RULE_KEY,
    RULE_RESPONSE_HEADER,
    TASK_TYPE_KEY,
    TASK_TYPE_RESPONSE_HEADER,
)

# range_match's end is exclusive; "no upper bound" for a prompt length.
NO_MAXIMUM = 2**62


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
