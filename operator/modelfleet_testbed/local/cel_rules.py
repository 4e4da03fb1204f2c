"""A CRD's `x-kubernetes-validations` (CEL rules), evaluated as kube-apiserver does, with
cel-python: at every node of the object that has rules, `self` typed from the schema
(date-time -> timestamp, integer -> int), `oldSelf` on updates, after defaulting.

A broken rule is the CRD's fault: it is reported at its node, like the server's runtime
errors, rather than crashing the write.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import celpy
from celpy import celtypes

from modelfleet_testbed.local.schema_validation import (
    NOTHING_KEPT,
    UNSET,
    FieldError,
    FieldPath,
    Kept,
    correlated,
    go_value,
)

RULES = "x-kubernetes-validations"
_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()  # builds cel-python's parser: once


@functools.cache
def _program(rule: str) -> celpy.Runner:
    environment = _environment()
    return environment.program(environment.compile(rule))


def compile_rules(schema: Mapping[str, Any]) -> None:
    """Compile every rule of a schema now (when its CRD is served), not on the first write."""
    for rule in schema.get(RULES, ()):
        try:
            _program(rule["rule"])
        except Exception:  # reported when a write meets it, at the rule's field path
            continue
    for sub in (schema.get("properties") or {}).values():
        compile_rules(sub)
    for name in ("items", "additionalProperties"):
        if isinstance(schema.get(name), Mapping):
            compile_rules(schema[name])


class _Unconverted:
    __slots__ = ("schema", "value")

    def __init__(self, schema: Mapping[str, Any], value: Any):
        self.schema, self.value = schema, value


class LazyMap(celtypes.MapType):
    """An object for CEL whose fields are converted when a rule reads them: a rule on the
    root object reads `self.metadata.name`, not the whole status."""

    def __getitem__(self, key: Any) -> Any:
        item = super().__getitem__(key)
        if isinstance(item, _Unconverted):
            item = to_cel(item.schema, item.value)
            dict.__setitem__(self, key, item)
        return item

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 (dict.get skips conversion)

    def values(self):  # type: ignore[override]
        return [self[key] for key in self]

    def items(self):  # type: ignore[override]
        return [(key, self[key]) for key in self]


def to_cel(schema: Mapping[str, Any], value: Any) -> celtypes.Value:
    """A JSON value typed the way the API server types it for CEL."""
    kind = schema.get("type")
    if isinstance(value, Mapping) and ("properties" in schema or "additionalProperties" in schema):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        converted = LazyMap()
        for key, item in value.items():
            sub = properties.get(key) or (additional if isinstance(additional, Mapping) else {})
            dict.__setitem__(converted, celtypes.StringType(key), _Unconverted(sub, item))
        return converted
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(schema.get("items") or {}, item) for item in value])
    if kind == "string" and schema.get("format") == "date-time" and isinstance(value, str):
        return celtypes.TimestampType(value)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return celtypes.IntType(int(value))
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return celpy.json_to_cel(value)


def _scope_type(schema: Mapping[str, Any]) -> str:
    # What kube-apiserver prints as the bad value of a failed rule: the node's type.
    return str(schema.get("type") or "object")


def has_rules(schema: Mapping[str, Any]) -> bool:
    """Whether the schema or anything under it has CEL rules (remembered per schema node)."""
    key = id(schema)
    known = _HAS_RULES.get(key)
    if known is None or known[0] is not schema:
        below = [*(schema.get("properties") or {}).values()]
        for name in ("items", "additionalProperties"):
            if isinstance(schema.get(name), Mapping):
                below.append(schema[name])
        known = (schema, bool(schema.get(RULES)) or any(has_rules(sub) for sub in below))
        _HAS_RULES[key] = known
    return known[1]


_HAS_RULES: dict[int, tuple[Mapping[str, Any], bool]] = {}


def rule_errors(
    schema: Mapping[str, Any],
    value: Any,
    old: Any = UNSET,
    path: FieldPath = (),
    kept: Kept = NOTHING_KEPT,
) -> Iterator[FieldError]:
    """The failed rules of every node of `value`, at kube-apiserver's field paths. A node
    an update left unchanged is not evaluated (ratcheting would forgive it anyway)."""
    if id(value) in kept or not has_rules(schema):
        return
    for rule in schema.get(RULES, ()):
        transition = "oldSelf" in rule["rule"]
        if transition and old is UNSET:
            continue  # transition rules run on updates only
        error = _run_rule(schema, rule, value, old, path, transition)
        if error is not None:
            yield error
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key) or (additional if isinstance(additional, Mapping) else None)
            if sub is None:
                continue
            old_item = old.get(key, UNSET) if isinstance(old, Mapping) else UNSET
            yield from rule_errors(sub, item, old_item, (*path, key), kept)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from rule_errors(
                schema["items"], item, correlated(schema, old, item), (*path, index), kept
            )


def _run_rule(
    schema: Mapping[str, Any],
    rule: Mapping[str, Any],
    value: Any,
    old: Any,
    path: FieldPath,
    transition: bool,
) -> FieldError | None:
    activation = {"self": to_cel(schema, value)}
    if transition:
        activation["oldSelf"] = to_cel(schema, old)
    try:
        program = _program(rule["rule"])
    except Exception as error:  # a rule that does not compile is the CRD's bug
        return _failure(rule, path, schema, f"compilation failed: {error}", "FieldValueInvalid")
    try:
        verdict = program.evaluate(activation)
    except Exception as error:  # e.g. a field the rule reads is absent
        verdict = celpy.CELEvalError(error.args[0] if error.args else str(error))
    if isinstance(verdict, celpy.CELEvalError):
        failure = f"{verdict.args[0]} evaluating rule: {rule['rule']}"
        return _failure(rule, path, schema, failure, "FieldValueInvalid")
    if bool(verdict):
        return None
    message = rule.get("message") or f"failed rule: {rule['rule']}"
    if rule.get("messageExpression"):
        message = _message_expression(rule["messageExpression"], activation) or message
    return _failure(rule, path, schema, message, rule.get("reason") or "FieldValueInvalid")


def _message_expression(expression: str, activation: dict[str, Any]) -> str | None:
    try:
        result = _program(expression).evaluate(activation)
    except Exception:
        return None
    return str(result) if isinstance(result, celtypes.StringType) and str(result).strip() else None


def _failure(
    rule: Mapping[str, Any], path: FieldPath, schema: Mapping[str, Any], message: str, cause: str
) -> FieldError:
    at = (*path, *_relative_path(rule.get("fieldPath") or ""))
    label = _REASONS.get(cause, "Invalid value")
    if cause in ("FieldValueForbidden", "FieldValueRequired"):
        body = f"{label}: {message}"
    else:
        body = f"{label}: {go_value(_scope_type(schema))}: {message}"
    return FieldError(at, cause, body, path)


def _relative_path(field_path: str) -> FieldPath:
    """`.min`, `.items[2]`, `['a.b']` -> path steps."""
    steps: list[str | int] = []
    text = field_path
    while text:
        if text.startswith("."):
            text = text[1:]
            name = ""
            while text and text[0] not in ".[":
                name, text = name + text[0], text[1:]
            steps.append(name)
        elif text.startswith("['"):
            end = text.index("']")
            steps.append(text[2:end])
            text = text[end + 2 :]
        elif text.startswith("["):
            end = text.index("]")
            steps.append(int(text[1:end]))
            text = text[end + 1 :]
        else:
            break
    return tuple(steps)
