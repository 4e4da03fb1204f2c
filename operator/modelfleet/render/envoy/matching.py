"""Envoy route matchers for one routing-table route: body fields, headers, paths."""

from __future__ import annotations

from typing import Any

from modelfleet.plan.routing.table import RouteMatchSpec
from modelfleet.render.envoy.names import (
    GENERATION_PATHS,
    INPUT_FIELD_BY_PATH,
    METADATA_NAMESPACE,
    MODEL_KEY,
    TASK_TYPE_HEADER,
    TASK_TYPE_KEY,
)

INFERENCE_PATH_REGEX = "^(?:" + "|".join(INPUT_FIELD_BY_PATH) + ")$"
GENERATION_PATH_REGEX = "^(?:" + "|".join(GENERATION_PATHS) + ")$"


def exact_or_any(values: tuple[str, ...]) -> dict[str, Any]:
    """A StringMatcher for "equals one of `values`"."""
    if len(values) == 1:
        return {"exact": values[0]}
    alternatives = "|".join(re2_literal(v) for v in values)
    return {"safe_regex": {"regex": f"^(?:{alternatives})$"}}


# Every ASCII character that is not a letter, digit, space or underscore, escaped.
_RE2_ESCAPES = {
    code: "\\" + chr(code)
    for code in range(128)
    if not chr(code).isalnum() and chr(code) not in " _"
}


def re2_literal(text: str) -> str:
    """`text` as an RE2 pattern matching only itself (ASCII punctuation escaped)."""
    return text.translate(_RE2_ESCAPES)


def body_field(key: str, values: tuple[str, ...]) -> dict[str, Any]:
    return {
        "filter": METADATA_NAMESPACE,
        "path": [{"key": key}],
        "value": {"string_match": exact_or_any(values)},
    }


def body_field_absent(key: str) -> dict[str, Any]:
    return {
        "filter": METADATA_NAMESPACE,
        "path": [{"key": key}],
        "value": {"present_match": True},
        "invert": True,
    }


def header(name: str, values: tuple[str, ...]) -> dict[str, Any]:
    # HTTP header names are case-insensitive; Envoy keeps them lower-case.
    return {"name": name.lower(), "string_match": exact_or_any(values)}


def route_matches(spec: RouteMatchSpec) -> list[dict[str, Any]]:
    """The Envoy matches that together mean `spec`, in the order they must be tried.

    The task type is the body's `task_type`, or the x-task-type header when the body has
    none; a spec with task types therefore becomes two mutually exclusive matches.
    """
    headers = [header(name, (value,)) for name, value in spec.headers]
    metadata = [body_field(MODEL_KEY, spec.models)] if spec.models else []
    base = {"safe_regex": {"regex": INFERENCE_PATH_REGEX}}
    if not spec.task_types:
        return [_match(base, headers, metadata)]
    return [
        _match(base, headers, [*metadata, body_field(TASK_TYPE_KEY, spec.task_types)]),
        _match(
            base,
            [*headers, header(TASK_TYPE_HEADER, spec.task_types)],
            [*metadata, body_field_absent(TASK_TYPE_KEY)],
        ),
    ]


def _match(
    base: dict[str, Any], headers: list[dict[str, Any]], metadata: list[dict[str, Any]]
) -> dict[str, Any]:
    match = dict(base)
    if headers:
        match["headers"] = headers
    if metadata:
        match["dynamic_metadata"] = metadata
    return match
