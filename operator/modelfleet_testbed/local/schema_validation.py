"""What kube-apiserver does to a custom resource with its CRD's structural schema:
prune unknown fields, apply defaults, validate types and bounds.

Errors have kube-apiserver's shape (`field.Error` of apimachinery, with the messages of
kube-openapi's validator): `spec.variants[0].gpusPerReplica: Invalid value: 0:
spec.variants[0].gpusPerReplica in body should be greater than or equal to 1`.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
FieldPath = tuple[str | int, ...]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class FieldError:
    """One refusal: where (`path`), the cause type of a Status (`FieldValueInvalid`...), the
    message after the path, and the node whose value decided it (for ratcheting)."""

    path: FieldPath
    cause: str
    body: str
    node: FieldPath

    @property
    def field(self) -> str:
        return path_text(self.path)

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def path_text(path: FieldPath) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def go_value(value: Any) -> str:
    """A bad value as apimachinery prints it: strings quoted, numbers and booleans bare."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return go_number(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def go_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def type_name(value: Any) -> str:
    """The JSON type of a value, as the validator names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def invalid(path: FieldPath, value: Any, detail: str, node: FieldPath | None = None) -> FieldError:
    body = f"Invalid value: {go_value(value)}: {detail}"
    return FieldError(path, "FieldValueInvalid", body, path if node is None else node)


# -- what an update left as it was -----------------------------------------------------------

Kept = frozenset[int]  # ids of containers in the new object equal to their old counterpart
NOTHING_KEPT: Kept = frozenset()
UNSET: Any = object()


def same(a: Any, b: Any) -> bool:
    """Deep equality that tells `true` from `1` (JSON types, not Python's)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def unchanged_parts(new: Any, old: Any) -> Kept:
    """The objects and lists of `new` equal to the old object's at the same place (list
    items: lined up with the old list). The stored old object was pruned, defaulted and
    validated when it was written; what is unchanged needs none of it again (and the
    server's validation ratcheting forgives it), so the walks below skip those parts:
    a status write does not re-check the whole spec, nor a history list shifted by one."""
    kept: set[int] = set()

    def walk(new_value: Any, old_value: Any) -> None:
        if not isinstance(new_value, (dict, list)):
            return
        if same(new_value, old_value):
            kept.add(id(new_value))
        elif isinstance(new_value, dict) and isinstance(old_value, dict):
            for key, item in new_value.items():
                if key in old_value:
                    walk(item, old_value[key])
        elif isinstance(new_value, list) and isinstance(old_value, list):
            # Lists such as a history drop old items at the front and add new ones at the
            # end: line the new list up with the old one where its first item is found.
            first = new_value[0] if new_value else None
            offset = next((j for j, item in enumerate(old_value) if same(item, first)), 0)
            for index, item in enumerate(new_value):
                before = index + offset
                if before < len(old_value) and same(item, old_value[before]):
                    if isinstance(item, (dict, list)):
                        kept.add(id(item))
                elif index < len(old_value):
                    walk(item, old_value[index])

    if old is not None:
        walk(new, old)
    return frozenset(kept)


# -- pruning ----------------------------------------------------------------------------------


def prune(
    schema: Mapping[str, Any], value: Any, path: FieldPath = (), kept: Kept = NOTHING_KEPT
) -> tuple[Any, list[str]]:
    """The value without fields the schema does not declare (and without nulls where the
    schema does not allow them), with the dotted paths of the unknown fields."""
    unknown: list[str] = []
    return _prune(schema, value, path, unknown, kept), unknown


def _prune(
    schema: Mapping[str, Any], value: Any, path: FieldPath, unknown: list[str], kept: Kept
) -> Any:
    if id(value) in kept:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        result = {}
        for key, item in value.items():
            sub = (properties or {}).get(key)
            if sub is None and isinstance(additional, Mapping):
                sub = additional
            if sub is None:
                if schema.get(PRESERVE) or additional is True:
                    result[key] = item
                else:
                    unknown.append(path_text((*path, key)))
                continue
            if item is None and not sub.get("nullable"):
                continue  # kube-apiserver drops nulls a field does not allow, then defaults
            result[key] = _prune(sub, item, (*path, key), unknown, kept)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [
            _prune(schema["items"], item, (*path, index), unknown, kept)
            for index, item in enumerate(value)
        ]
    return value


# -- defaulting -------------------------------------------------------------------------------


def with_defaults(schema: Mapping[str, Any], value: Any, kept: Kept = NOTHING_KEPT) -> Any:
    """Fill in the schema's defaults where a field is absent (the parent object exists)."""
    if id(value) in kept:
        return value
    if isinstance(value, dict) and "properties" in schema:
        filled = dict(value)
        for name, sub in schema["properties"].items():
            if "default" in sub and name not in filled:
                filled[name] = copy.deepcopy(sub["default"])
        for name, item in filled.items():
            sub = schema["properties"].get(name)
            if sub is not None:
                filled[name] = with_defaults(sub, item, kept)
        return filled
    additional = schema.get("additionalProperties")
    if isinstance(value, dict) and isinstance(additional, Mapping):
        return {key: with_defaults(additional, item, kept) for key, item in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [with_defaults(schema["items"], item, kept) for item in value]
    return value


# -- validation -------------------------------------------------------------------------------


def validate(
    schema: Mapping[str, Any], value: Any, kept: Kept = NOTHING_KEPT, path: FieldPath = ()
) -> list[FieldError]:
    """The errors of `value`, except in the parts `kept` (unchanged by an update)."""
    return list(_validate(schema, value, path, kept))


def _validate(
    schema: Mapping[str, Any], value: Any, path: FieldPath, kept: Kept
) -> Iterator[FieldError]:
    if id(value) in kept:
        return
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            name = path_text(path)
            yield FieldError(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "null": {name} in body must be of type {schema["type"]}: "null"',
                path,
            )
        return
    type_error = _type_error(schema, value, path)
    if type_error is not None:
        yield type_error
        return
    yield from _scalar_checks(schema, value, path)
    if isinstance(value, dict):
        yield from _object_checks(schema, value, path, kept)
    elif isinstance(value, list):
        yield from _array_checks(schema, value, path, kept)


def _type_error(schema: Mapping[str, Any], value: Any, path: FieldPath) -> FieldError | None:
    if schema.get(INT_OR_STRING):
        ok = isinstance(value, str) or type_name(value) == "integer"
        wanted = "integer,string"
    else:
        wanted = schema.get("type")
        if wanted is None:
            return None
        actual = type_name(value)
        ok = actual == wanted or (wanted == "number" and actual == "integer")
    if ok:
        return None
    detail = f"{path_text(path)} in body must be of type {wanted}: {json.dumps(type_name(value))}"
    return FieldError(
        path, "FieldValueTypeInvalid", f"Invalid value: {go_value(value)}: {detail}", path
    )


_NUMBER_CHECKS = ("minimum", "maximum", "multipleOf")
_STRING_CHECKS = ("maxLength", "minLength", "pattern", "format")


def _scalar_checks(schema: Mapping[str, Any], value: Any, path: FieldPath) -> Iterator[FieldError]:
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(
            json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in schema["enum"]
        )
        yield FieldError(
            path,
            "FieldValueNotSupported",
            f"Unsupported value: {go_value(value)}: supported values: {supported}",
            path,
        )
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and any(check in schema for check in _NUMBER_CHECKS):
        yield from _bounds(schema, value, path)
    if isinstance(value, str) and any(check in schema for check in _STRING_CHECKS):
        yield from _string_checks(schema, value, path)


def _bounds(schema: Mapping[str, Any], value: float, path: FieldPath) -> Iterator[FieldError]:
    name = path_text(path)
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= low:
            yield invalid(path, value, f"{name} in body should be greater than {go_number(low)}")
        elif value < low:
            yield invalid(
                path, value, f"{name} in body should be greater than or equal to {go_number(low)}"
            )
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= high:
            yield invalid(path, value, f"{name} in body should be less than {go_number(high)}")
        elif value > high:
            yield invalid(
                path, value, f"{name} in body should be less than or equal to {go_number(high)}"
            )
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step)):
        yield invalid(path, value, f"{name} in body should be a multiple of {go_number(step)}")


def _string_checks(schema: Mapping[str, Any], value: str, path: FieldPath) -> Iterator[FieldError]:
    name = path_text(path)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        limit = schema["maxLength"]
        unit = "byte" if limit == 1 else "bytes"
        yield FieldError(
            path, "FieldValueTooLong", f"Too long: may not be more than {limit} {unit}", path
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield invalid(
            path, value, f"{name} in body should be at least {schema['minLength']} chars long"
        )
    if "pattern" in schema and not _compiled(schema["pattern"]).search(value):
        yield invalid(path, value, f"{name} in body should match '{schema['pattern']}'")
    fmt = schema.get("format")
    if fmt in ("date-time", "date") and not _is_format(fmt, value):
        yield FieldError(
            path,
            "FieldValueTypeInvalid",
            f"Invalid value: {go_value(value)}: {name} in body must be of type {fmt}: {go_value(value)}",
            path,
        )


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_format(fmt: str, value: str) -> bool:
    if not (_RFC3339 if fmt == "date-time" else _DATE).match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _object_checks(
    schema: Mapping[str, Any], value: dict, path: FieldPath, kept: Kept
) -> Iterator[FieldError]:
    for required in schema.get("required", ()):
        if required not in value:
            yield FieldError((*path, required), "FieldValueRequired", "Required value", path)
    count = len(value)
    if "maxProperties" in schema and count > schema["maxProperties"]:
        limit = schema["maxProperties"]
        yield FieldError(
            path, "FieldValueTooMany", f"Too many: {count}: must have at most {limit} items", path
        )
    if "minProperties" in schema and count < schema["minProperties"]:
        yield invalid(
            path,
            count,
            f"{path_text(path)} in body should have at least {schema['minProperties']} properties",
        )
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        sub = properties.get(key)
        if sub is None and isinstance(additional, Mapping):
            sub = additional
        if sub is not None:
            yield from _validate(sub, item, (*path, key), kept)


def _array_checks(
    schema: Mapping[str, Any], value: list, path: FieldPath, kept: Kept
) -> Iterator[FieldError]:
    count = len(value)
    if "maxItems" in schema and count > schema["maxItems"]:
        limit = schema["maxItems"]
        unit = "item" if limit == 1 else "items"
        yield FieldError(
            path, "FieldValueTooMany", f"Too many: {count}: must have at most {limit} {unit}", path
        )
    if "minItems" in schema and count < schema["minItems"]:
        yield invalid(
            path,
            count,
            f"{path_text(path)} in body should have at least {schema['minItems']} items",
        )
    yield from _list_type_checks(schema, value, path)
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            yield from _validate(items, item, (*path, index), kept)


def correlated(schema: Mapping[str, Any], old_items: Any, item: Any) -> Any:
    """The old item an updated list item is compared with for ratcheting: lists of
    `x-kubernetes-list-type: map` are correlated by their keys, other lists not at all
    (as kube-apiserver does); UNSET when there is none."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old_items, list):
        return UNSET
    keys = schema.get("x-kubernetes-list-map-keys") or []
    if not isinstance(item, Mapping):
        return UNSET
    identity = [item.get(key) for key in keys]
    for old in old_items:
        if isinstance(old, Mapping) and [old.get(key) for key in keys] == identity:
            return old
    return UNSET


def _list_type_checks(
    schema: Mapping[str, Any], value: list, path: FieldPath
) -> Iterator[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type not in ("map", "set"):
        return
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if list_type == "map" and isinstance(item, Mapping):
            identity: Any = {key: item.get(key) for key in keys}
        else:
            identity = item
        marker = json.dumps(identity, sort_keys=True)
        if marker in seen:
            yield FieldError(
                (*path, index),
                "FieldValueDuplicate",
                f"Duplicate value: {go_value(identity)}",
                path,
            )
        seen.add(marker)
