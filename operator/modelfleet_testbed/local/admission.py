"""Admission of writes the way kube-apiserver admits them.

Custom resources go through their CRD's structural schema: unknown fields are pruned
(or refused with `fieldValidation=Strict`, the way `kubectl apply` asks, or reported in a
`Warning` header with `Warn`, the server's default), nulls a field does not allow are
dropped, defaults are filled in, then types, bounds, patterns, enums, list limits and the
CEL rules are checked. A refused write is a 422 `Invalid` Status whose causes carry each
field path, which `kubectl` prints as
`The ModelPool "x" is invalid: spec.variants[0].replicas.min: Invalid value: "object": ...`.
Like the server's validation ratcheting, an update is not refused for a value it left
unchanged. Built-in kinds get the unknown-field check on their top level and metadata
(their schemas here are minimal, see builtin_kinds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelfleet_testbed.local.builtin_kinds import OBJECT_META, PRESERVE
from modelfleet_testbed.local.cel_rules import rule_errors
from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.schema_validation import (
    NOTHING_KEPT,
    UNSET,
    FieldError,
    Kept,
    prune,
    unchanged_parts,
    validate,
    with_defaults,
)

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"


@dataclass
class Admission:
    """One request's admission: how to treat unknown fields, and the warnings to send."""

    directive: str = WARN
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_param(cls, value: str | None) -> Admission:
        directive = value or WARN
        if directive not in (STRICT, WARN, IGNORE):
            raise ApiError(
                400, f'fieldValidation must be one of "Strict", "Warn", "Ignore", not {directive!r}'
            )
        return cls(directive)

    def admit(
        self,
        resource_type: Any,  # store.ResourceType (not imported: the store imports this module)
        new: dict[str, Any],
        old: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The object as stored (pruned, defaulted), or ApiError 400/422."""
        schema = resource_type.schema
        if not schema:
            return new
        if not resource_type.custom:
            return self._unknown_fields(resource_type, _closed_top_level(schema), new)
        kept = unchanged_parts(new, old)
        pruned = self._unknown_fields(resource_type, schema, new, kept)
        admitted = with_defaults(schema, pruned, kept)
        _refuse_invalid(resource_type, admitted, old, kept)
        return admitted

    def _unknown_fields(
        self,
        resource_type: Any,
        schema: Mapping[str, Any],
        obj: dict[str, Any],
        kept: Kept = NOTHING_KEPT,
    ) -> dict[str, Any]:
        pruned, unknown = prune(_with_meta(schema), obj, kept=kept)
        if not unknown:
            return pruned  # nulls the schema does not allow are gone all the same
        if self.directive == STRICT:
            listed = ", ".join(f'unknown field "{name}"' for name in unknown)
            version = resource_type.resource.version
            raise ApiError(
                400,
                f'{resource_type.kind} in version "{version}" cannot be handled as a '
                f"{resource_type.kind}: strict decoding error: {listed}",
            )
        if self.directive == WARN:
            self.warnings.extend(f'unknown field "{name}"' for name in unknown)
        return pruned


_ENVELOPE = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
# ObjectMeta's own fields; their values are not checked further here.
_META_TOP = {
    "type": "object",
    "properties": {name: {PRESERVE: True} for name in OBJECT_META["properties"]},
}


def _with_meta(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The root as the server treats it: apiVersion, kind and metadata are always known."""
    properties = {**_ENVELOPE, **schema.get("properties", {}), "metadata": _META_TOP}
    return {**schema, "properties": properties}


def _closed_top_level(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's top level with its fields' contents left open."""
    return {
        "type": "object",
        "properties": {name: {PRESERVE: True} for name in schema["properties"]},
    }


def _refuse_invalid(
    resource_type: Any, new: dict[str, Any], old: Mapping[str, Any] | None, kept: Kept
) -> None:
    """Schema errors, then (on a schema-valid object) the CEL rules; parts an update left
    unchanged are not checked (the server's validation ratcheting forgives them)."""
    schema = resource_type.schema
    errors = validate(_without_metadata(schema), new, kept)
    if not errors:
        old_view = _cel_view(old) if old is not None else UNSET
        errors = list(rule_errors(schema, _cel_view(new), old_view, kept=kept))
    if errors:
        raise invalid_object(resource_type, new["metadata"].get("name", ""), errors)


def _without_metadata(schema: Mapping[str, Any]) -> dict[str, Any]:
    # The server validates metadata itself; the CRD may only say it is an object.
    properties = {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}
    return {**schema, "properties": properties}


def _cel_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    # CEL sees only metadata.name and metadata.generateName of the root object.
    metadata = obj.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "generateName") if k in metadata}
    return {**obj, "metadata": kept}


def invalid_object(resource_type: Any, name: str, errors: list[FieldError]) -> ApiError:
    group = resource_type.resource.group
    qualified = f"{resource_type.kind}.{group}" if group else resource_type.kind
    listed = [str(error) for error in errors]
    summary = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {summary}',
        details={
            "name": name,
            "group": group,
            "kind": resource_type.kind,
            "causes": [
                {"reason": error.cause, "message": error.body, "field": error.field}
                for error in errors
            ],
        },
    )
