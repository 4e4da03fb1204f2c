"""pydantic JSON schema -> Kubernetes structural OpenAPI v3 schema.

A CRD's schema must be *structural*: every node states its type, with no `$ref`, no
`anyOf` alternatives and no `additionalProperties: false` (the API server prunes unknown
fields instead). pydantic emits JSON Schema 2020-12; this module rewrites it node by node
and refuses anything it has no faithful translation for, so a model change that cannot be
expressed in a CRD fails `make crds` instead of producing a schema the API server rejects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Keywords that mean the same in OpenAPI v3 (as Kubernetes reads it) as in JSON Schema.
_KEPT = frozenset(
    {
        "description",
        "type",
        "format",
        "enum",
        "minimum",
        "maximum",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
    }
)
# Only for people reading the JSON schema; the CRD's `kubectl explain` uses description.
_DROPPED = frozenset({"title"})

# Output order, so the YAML reads top-down the way a person scans a field.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "items",
    "properties",
    "additionalProperties",
    "required",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
)

_RULE_KEY_ORDER = ("rule", "message", "messageExpression", "reason", "fieldPath")


class UnsupportedSchema(ValueError):
    """A model uses a JSON Schema construct a structural CRD schema cannot express."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's wire-format (camelCase) schema as a structural OpenAPI v3 schema."""
    raw = model.model_json_schema(by_alias=True)
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, model.__name__)


def _convert(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    node = _without_indirection(node, definitions, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {
                name: _convert(sub, definitions, f"{path}.{name}") for name, sub in value.items()
            }
        elif key == "items":
            if not isinstance(value, dict):
                raise UnsupportedSchema(f"{path}: tuple-style 'items' has no CRD equivalent")
            out[key] = _convert(value, definitions, f"{path}[]")
        elif key == "additionalProperties":
            _convert_additional_properties(value, out, definitions, path)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 gives the bound itself; OpenAPI v3.0 a flag on minimum/maximum.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if bound in node:
                raise UnsupportedSchema(f"{path}: both {bound} and {key} are set; keep one")
            out[bound] = value
            out[key] = True
        elif key == "default":
            if value is not None:
                out[key] = value
        elif key == "x-kubernetes-validations":
            out[key] = [_ordered(rule, _RULE_KEY_ORDER) for rule in value]
        elif key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            raise UnsupportedSchema(
                f"{path}: JSON Schema keyword {key!r} has no structural CRD equivalent; "
                "express the constraint another way or teach modelfleet.api.structural it"
            )
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise UnsupportedSchema(f"{path}: no type; a structural schema needs one on every node")
    return _ordered(out, _KEY_ORDER)


def _without_indirection(
    node: dict[str, Any], definitions: dict[str, Any], path: str
) -> dict[str, Any]:
    """Inline `$ref`, collapse `anyOf: [X, null]` to X and `const` to a one-value enum.

    Keys written next to a `$ref` or `anyOf` (a field's description or default) win over
    the referenced definition's own.
    """
    node = dict(node)
    while "$ref" in node or "anyOf" in node:
        if "$ref" in node:
            target = _definition(node.pop("$ref"), definitions, path)
            node = {**target, **node}
        else:
            branches = node.pop("anyOf")
            others = [branch for branch in branches if branch.get("type") != "null"]
            if len(others) != 1:
                raise UnsupportedSchema(
                    f"{path}: a union of {len(others)} types has no structural CRD equivalent; "
                    "only 'X | None' is supported"
                )
            node = {**others[0], **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _definition(ref: str, definitions: dict[str, Any], path: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in definitions:
        raise UnsupportedSchema(f"{path}: cannot resolve $ref {ref!r}")
    return definitions[ref[len(prefix) :]]


def _convert_additional_properties(
    value: Any, out: dict[str, Any], definitions: dict[str, Any], path: str
) -> None:
    if value is False:
        # extra="forbid": the API server prunes (or, with strict field validation, refuses)
        # unknown fields by itself; a structural schema may not say false here.
        return
    if value is True or value == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
        return
    out["additionalProperties"] = _convert(value, definitions, f"{path}.*")


def _ordered(mapping: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    def rank(key: str) -> tuple[int, str]:
        return (order.index(key), "") if key in order else (len(order), key)

    return {key: mapping[key] for key in sorted(mapping, key=rank)}
