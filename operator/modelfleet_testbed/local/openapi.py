"""`/openapi/v2` and `/openapi/v3`: the OpenAPI documents kubectl reads, built from the
resources the server serves (CRDs with their openAPIV3Schema, built-in kinds with the
schemas of builtin_kinds).

What kubectl does with them:
- `kubectl apply/edit/create` (validation on) look up each kind's PATCH operation in the
  v3 document of its group-version; one with a `fieldValidation` parameter means the
  server validates, so kubectl sends `fieldValidation=Strict` and lets admission refuse.
- `kubectl explain` walks the v3 schemas (`components.schemas`, matched by
  `x-kubernetes-group-version-kind`).
- `kubectl apply` computes a strategic merge patch from the v3 schema when the PATCH
  operation lists `application/strategic-merge-patch+json`. The built-in schemas here are
  minimal, and kubectl's walk fails on fields they leave undescribed; so the PATCH
  operations do not list it, and kubectl computes strategic merge patches from its own
  compiled-in types instead (the server still accepts them, see merging.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from modelfleet_testbed.local.builtin_kinds import OBJECT_META, definition_name

OBJECT_META_NAME = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PATCH_NAME = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
STATUS_NAME = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
SERVER_VERSION = "v1.35.0"
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)


def group_version_key(group: str, version: str) -> str:
    """The v3 index key of a group-version: `api/v1`, `apis/apps/v1`."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _gvk(resource_type: Any) -> dict[str, str]:
    res = resource_type.resource
    return {"group": res.group, "version": res.version, "kind": resource_type.kind}


def kind_schema(resource_type: Any, ref_prefix: str) -> dict[str, Any]:
    """The published schema of a kind: its schema, metadata as a reference to ObjectMeta."""
    schema = copy.deepcopy(dict(resource_type.schema or {"type": "object"}))
    properties = schema.setdefault("properties", {})
    properties["metadata"] = {
        "description": "Standard object's metadata.",
        "allOf": [{"$ref": f"{ref_prefix}{OBJECT_META_NAME}"}],
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(resource_type)]
    return schema


def _parameter(name: str, location: str, description: str, v3: bool) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": location, "description": description}
    if location == "path":
        parameter["required"] = True
    if v3:
        parameter["schema"] = {"type": "string", "uniqueItems": True}
    else:
        parameter["type"] = "string"
        parameter["uniqueItems"] = True
    return parameter


def _write_parameters(v3: bool) -> list[dict[str, Any]]:
    return [
        _parameter("dryRun", "query", "When present, do not persist the change.", v3),
        _parameter("fieldManager", "query", "Name of the actor making the change.", v3),
        _parameter(
            "fieldValidation",
            "query",
            "Ignore, Warn (default) or Strict: what to do with unknown or duplicate fields.",
            v3,
        ),
    ]


def _operation(
    resource_type: Any,
    action: str,
    operation_id: str,
    ref: str,
    *,
    v3: bool,
    parameters: Iterable[dict[str, Any]] = (),
    body_types: Iterable[str] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "description": f"{action} {resource_type.kind}",
        "tags": [resource_type.resource.group or "core"],
        "parameters": list(parameters),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource_type),
    }
    if v3:
        operation["responses"] = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
        }
        body_types = list(body_types)
        if body_types:
            operation["requestBody"] = {
                "content": {media: {"schema": {"$ref": ref}} for media in body_types},
                "required": True,
            }
    else:
        operation["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
        operation["consumes"] = list(body_types) or ["*/*"]
        operation["produces"] = ["application/json", "application/yaml"]
    return operation


def _paths(resource_type: Any, ref_prefix: str, v3: bool) -> dict[str, Any]:
    res = resource_type.resource
    base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
    scope = "/namespaces/{namespace}" if resource_type.namespaced else ""
    collection = f"{base}{scope}/{res.plural}"
    item = f"{collection}/{{name}}"
    ref = f"{ref_prefix}{definition_name(res.group, res.version, resource_type.kind)}"
    patch_ref = f"{ref_prefix}{PATCH_NAME}"
    kind = resource_type.kind
    writes = _write_parameters(v3)
    path_parameters = [_parameter("name", "path", f"name of the {kind}", v3)]
    if resource_type.namespaced:
        path_parameters.append(_parameter("namespace", "path", "object name and auth scope", v3))
    json_types = ["application/json", "application/yaml"]

    def patch_operation(suffix: str) -> dict[str, Any]:
        operation = _operation(
            resource_type,
            "patch",
            f"patch{kind}{suffix}",
            ref,
            v3=v3,
            parameters=[*writes, _parameter("force", "query", "Take ownership on conflicts.", v3)],
            body_types=_PATCH_TYPES,
        )
        if v3:
            for media in operation["requestBody"]["content"].values():
                media["schema"] = {"$ref": patch_ref}
        return operation

    paths = {
        collection: {
            "get": _operation(resource_type, "list", f"list{kind}", ref, v3=v3),
            "post": _operation(
                resource_type,
                "post",
                f"create{kind}",
                ref,
                v3=v3,
                parameters=writes,
                body_types=json_types,
            ),
            "delete": _operation(
                resource_type, "deletecollection", f"deletecollection{kind}", ref, v3=v3
            ),
            "parameters": path_parameters[1:],
        },  # fmt: skip
        item: {
            "get": _operation(resource_type, "get", f"read{kind}", ref, v3=v3),
            "put": _operation(
                resource_type,
                "put",
                f"replace{kind}",
                ref,
                v3=v3,
                parameters=writes,
                body_types=json_types,
            ),
            "patch": patch_operation(""),
            "delete": _operation(resource_type, "delete", f"delete{kind}", ref, v3=v3),
            "parameters": path_parameters,
        },  # fmt: skip
    }
    if "status" in resource_type.subresources:
        paths[f"{item}/status"] = {
            "get": _operation(resource_type, "get", f"read{kind}Status", ref, v3=v3),
            "put": _operation(
                resource_type, "put", f"replace{kind}Status", ref, v3=v3, parameters=writes,
                body_types=json_types,
            ),
            "patch": patch_operation("Status"),
            "parameters": path_parameters,
        }  # fmt: skip
    return paths


def _shared_schemas() -> dict[str, Any]:
    return {
        OBJECT_META_NAME: copy.deepcopy(OBJECT_META),
        PATCH_NAME: {
            "type": "object",
            "description": "A patch: JSON patch, merge patch or an applied configuration.",
        },
        STATUS_NAME: {
            "type": "object",
            "description": "The outcome of an API call that does not return an object.",
            "properties": {
                "code": {"type": "integer", "description": "HTTP status code."},
                "message": {"type": "string", "description": "What happened."},
                "reason": {"type": "string", "description": "Machine-readable reason."},
                "status": {"type": "string", "description": "Success or Failure."},
            },
        },
    }


def _as_v2(schema: Any) -> Any:
    """OpenAPI v3 schema -> Swagger 2.0 (no nullable; refs to #/definitions)."""
    if isinstance(schema, list):
        return [_as_v2(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    converted = {}
    for key, value in schema.items():
        if key == "nullable":
            continue
        if key == "$ref" and isinstance(value, str):
            value = value.replace("#/components/schemas/", "#/definitions/")
        converted[key] = _as_v2(value)
    return converted


class OpenApiDocuments:
    """The documents of one set of served resources; rebuilt when the set changes."""

    def __init__(self, resource_types: Mapping[Any, Any]):
        self._types = resource_types
        self._cached_for: tuple[int, ...] = ()
        self._v3: dict[str, dict[str, Any]] = {}
        self._hashes: dict[str, str] = {}
        self._v2: dict[str, Any] = {}

    def _served(self) -> list[Any]:
        return [t for t in self._types.values() if t.schema is not None]

    def _refresh(self) -> None:
        marker = tuple(id(t) for t in self._types.values())
        if marker == self._cached_for:
            return
        self._cached_for = marker
        by_group_version: dict[str, list[Any]] = {}
        for resource_type in self._served():
            res = resource_type.resource
            by_group_version.setdefault(group_version_key(res.group, res.version), []).append(
                resource_type
            )
        self._v3 = {
            key: self._v3_document(types) for key, types in sorted(by_group_version.items())
        }
        self._hashes = {key: _hash(document) for key, document in self._v3.items()}
        self._v2 = self._v2_document(self._served())

    def _v3_document(self, types: list[Any]) -> dict[str, Any]:
        prefix = "#/components/schemas/"
        schemas = _shared_schemas()
        paths: dict[str, Any] = {}
        for resource_type in types:
            res = resource_type.resource
            schemas[definition_name(res.group, res.version, resource_type.kind)] = kind_schema(
                resource_type, prefix
            )
            paths.update(_paths(resource_type, prefix, v3=True))
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    def _v2_document(self, types: list[Any]) -> dict[str, Any]:
        prefix = "#/definitions/"
        definitions = _as_v2(_shared_schemas())
        paths: dict[str, Any] = {}
        for resource_type in types:
            res = resource_type.resource
            name = definition_name(res.group, res.version, resource_type.kind)
            definitions[name] = _as_v2(kind_schema(resource_type, "#/components/schemas/"))
            paths.update(_paths(resource_type, prefix, v3=False))
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION},
            "paths": paths,
            "definitions": definitions,
        }

    def v2(self) -> dict[str, Any]:
        self._refresh()
        return self._v2

    def v3_index(self) -> dict[str, Any]:
        self._refresh()
        return {
            "paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
                for key, digest in self._hashes.items()
            }
        }

    def v3(self, key: str) -> dict[str, Any] | None:
        self._refresh()
        return self._v3.get(key.strip("/"))


def _hash(document: Mapping[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True).encode()
    return hashlib.sha512(text).hexdigest()[:128].upper()
