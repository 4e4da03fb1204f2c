"""Is a Kubernetes object valid? Built-in kinds against the API's own schemas
(kubernetes-validate, its newest Kubernetes, strict: unknown fields are errors); custom
resources against their CRD: the Prometheus Operator's through its generated models
(PyPI cloudcoil-models-prometheus-operator; a field the model drops is an unknown field),
ours and kopf's through the openAPIV3Schema of the CRD the chart ships."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import jsonschema

from tests.deploy.chart import crd_objects

PROMETHEUS_OPERATOR = "monitoring.coreos.com"


@cache
def kubernetes_version() -> str:
    from kubernetes_validate import utils

    return utils.latest_version()


def _builtin_problems(obj: Mapping[str, Any]) -> list[str]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    try:
        kubernetes_validate.validate(dict(obj), kubernetes_version(), strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path))}: {err.message}"]
    except SchemaNotFoundError as err:
        return [err.message]
    return []


@cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for crd in crd_objects():
        spec = crd["spec"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            schemas[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict_schema(schema: Any) -> Any:
    """The structural schema as the API server applies it: unknown fields are pruned there,
    so here they are errors (unless the schema preserves them)."""
    if isinstance(schema, dict):
        strict = {
            k: _strict_properties(v) if k == "properties" else _strict_schema(v)
            for k, v in schema.items()
            if not k.startswith("x-kubernetes-")
        }
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict_schema(item) for item in schema]
    return schema


def _strict_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """Property names are data, not schema keywords: keep them all."""
    return {name: _strict_schema(schema) for name, schema in properties.items()}


def _custom_resource_problems(obj: Mapping[str, Any]) -> list[str]:
    schema = _crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no CRD in the chart for {obj['apiVersion']} {obj['kind']}"]
    schema = _strict_schema(schema)
    # Every object has these, whether the CRD describes them or not.
    schema.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )
    # OpenAPI v3.0 schemas: exclusiveMinimum is a boolean, as in JSON Schema draft 4.
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


def _prometheus_operator_problems(obj: Mapping[str, Any]) -> list[str]:
    import pydantic

    try:
        from cloudcoil.models.prometheus_operator import v1
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "validating Prometheus Operator objects needs PyPI cloudcoil-models-prometheus-operator"
        ) from None

    model = getattr(v1, obj["kind"], None)
    if model is None:
        return [f"{obj['kind']} is not a monitoring.coreos.com/v1 kind"]
    try:
        parsed = model.model_validate(dict(obj))
    except pydantic.ValidationError as err:
        return [str(err)]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"unknown field {path}" for path in _dropped(obj, kept)]


def _dropped(given: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(given, Mapping):
        missing = []
        for key, value in given.items():
            if not isinstance(kept, Mapping) or key not in kept:
                missing.append(f"{path}.{key}".lstrip("."))
            else:
                missing += _dropped(value, kept[key], f"{path}.{key}")
        return missing
    if isinstance(given, list) and isinstance(kept, list):
        return [
            p
            for i, (g, k) in enumerate(zip(given, kept, strict=False))
            for p in _dropped(g, k, f"{path}[{i}]")
        ]
    return []


def problems(obj: Mapping[str, Any]) -> list[str]:
    """What is wrong with `obj`; empty when it is valid."""
    group = obj["apiVersion"].rpartition("/")[0]
    if group == PROMETHEUS_OPERATOR:
        return _prometheus_operator_problems(obj)
    if (obj["apiVersion"], obj["kind"]) in _crd_schemas():
        return _custom_resource_problems(obj)
    return _builtin_problems(obj)


def invalid_objects(objects: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    found = {}
    for obj in objects:
        wrong = problems(obj)
        if wrong:
            name = obj.get("metadata", {}).get("name")
            found[f"{obj.get('kind')} {obj.get('metadata', {}).get('namespace') or ''}/{name}"] = (
                wrong
            )
    return found
