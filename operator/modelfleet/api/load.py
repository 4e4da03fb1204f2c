"""Reading resources from YAML files, with errors that name file, object and field."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelfleet.api import KINDS
from modelfleet.api.common import API_VERSION, FieldError
from modelfleet.api.errors import InputError, InvalidInput
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.api.yaml_input import load_all, read_bounded, shown

YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Resources:
    pools: list[ModelPool] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    policies: list[RoutingPolicy] = field(default_factory=list)

    def pool(self, namespace: str, name: str) -> ModelPool | None:
        return next((p for p in self.pools if p.namespace == namespace and p.name == name), None)

    def reservations_for(self, pool: ModelPool) -> list[Reservation]:
        return [
            r
            for r in self.reservations
            if r.namespace == pool.namespace and r.spec.pool == pool.name
        ]

    def policies_for(self, pool: ModelPool) -> list[RoutingPolicy]:
        return [
            p for p in self.policies if p.namespace == pool.namespace and p.spec.pool == pool.name
        ]


def format_loc(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith("function-") or part in ("function-after", "function-before"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


_HINTS = {
    "missing": "this field is required: add it",
    "extra_forbidden": "unknown field: remove it or check its spelling (fields are camelCase)",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number, not a fraction",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "datetime_from_date_parsing": "expected an RFC 3339 time such as 2026-12-01T08:00:00+08:00",
    "datetime_parsing": "expected an RFC 3339 time such as 2026-12-01T08:00:00+08:00",
    "timezone_aware": "has no UTC offset: write it in RFC 3339, e.g. 2026-12-01T08:00:00+08:00 "
    "or 2026-12-01T00:00:00Z",
}


_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
    "string_too_short": "at least this many characters:",
    "string_too_long": "at most this many characters:",
}


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if kind in _HINTS:
        got = error.get("input")
        quoted = "" if kind in ("missing",) or isinstance(got, dict) else f" (got {shown(got)})"
        return _HINTS[kind] + quoted
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx", {})
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        bound = "at least" if kind == "too_short" else "at most"
        return f"has {ctx.get('actual_length')} items; {bound} {limit} are allowed"
    if kind in _BOUNDS:
        bound = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {_BOUNDS[kind]} {bound} (got {shown(error.get('input'))})"
    return f"{error['msg']} (got {shown(error.get('input'))})"


def validation_errors(err: ValidationError, source: str, obj: str) -> list[InputError]:
    errors = []
    for item in err.errors(include_url=False):
        path = format_loc(item["loc"])
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            joiner = "" if cause.subpath.startswith("[") or not path else "."
            path, message = f"{path}{joiner}{cause.subpath}", cause.message
        else:
            message = _describe(item)
        errors.append(InputError(source, obj, path, message))
    return errors


def parse_resource(data: Any, source: str = "") -> tuple[Any | None, list[InputError]]:
    """One document -> (model, errors). Documents of other API groups are ignored (None, [])."""
    if not isinstance(data, dict):
        return None, [InputError(source, "", "", "expected a Kubernetes object (a mapping)")]
    api_version = data.get("apiVersion")
    kind = data.get("kind")
    if api_version is None or kind is None:
        return None, [
            InputError(
                source,
                "",
                "apiVersion" if api_version is None else "kind",
                "missing: every object needs apiVersion and kind",
            )
        ]
    if not str(api_version).startswith("modelfleet.io/"):
        return None, []
    metadata = data.get("metadata") or {}
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    namespace = metadata.get("namespace", "default") if isinstance(metadata, dict) else "default"
    obj = f"{kind} {namespace}/{name}"
    if api_version != API_VERSION:
        return None, [
            InputError(
                source,
                obj,
                "apiVersion",
                f"{shown(api_version)} is not served: use {API_VERSION!r}",
            )
        ]
    model = KINDS.get(kind)
    if model is None:
        return None, [
            InputError(
                source,
                obj,
                "kind",
                f"unknown kind {shown(kind)}: use one of {', '.join(sorted(KINDS))}",
            )
        ]
    try:
        return model.model_validate(data), []
    except ValidationError as err:
        return None, validation_errors(err, source, obj)


def iter_documents(paths: Sequence[str | Path]) -> Iterator[tuple[str, Any]]:
    """(source label, document) for every YAML document under the given files/directories."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        elif path.exists():
            files = [path]
        else:
            raise InvalidInput([InputError(str(path), "", "", "no such file or directory")])
        for file in files:
            documents = load_all(read_bounded(file), str(file))
            for index, doc in enumerate(documents):
                if doc is None:
                    continue
                yield f"{file}#{index + 1}" if len(documents) > 1 else str(file), doc


def check_references(
    resources: Resources, sources: dict[int, str] | None = None
) -> list[InputError]:
    """Every pool/variant a Reservation or RoutingPolicy names must exist among `resources`."""
    sources = sources or {}
    errors: list[InputError] = []

    def missing_pool(obj: Any) -> InputError:
        return InputError(
            sources.get(id(obj), ""),
            obj.ref,
            "spec.pool",
            f"no ModelPool {obj.spec.pool!r} in namespace {obj.namespace!r}: "
            "create it or fix the name",
        )

    def missing_variant(obj: Any, pool: ModelPool, path: str, name: str) -> InputError:
        known = ", ".join(v.name for v in pool.spec.variants)
        return InputError(
            sources.get(id(obj), ""),
            obj.ref,
            path,
            f"pool {pool.name!r} has no variant {name!r}: use one of {known}",
        )

    for reservation in resources.reservations:
        pool = resources.pool(reservation.namespace, reservation.spec.pool)
        if pool is None:
            errors.append(missing_pool(reservation))
        elif pool.spec.variant(reservation.spec.variant) is None:
            errors.append(
                missing_variant(reservation, pool, "spec.variant", reservation.spec.variant)
            )
    for policy in resources.policies:
        pool = resources.pool(policy.namespace, policy.spec.pool)
        if pool is None:
            errors.append(missing_pool(policy))
            continue
        for r_index, route in enumerate(policy.spec.routes):
            for b_index, backend in enumerate(route.backends):
                if pool.spec.variant(backend.variant) is None:
                    path = f"spec.routes[{r_index}].backends[{b_index}].variant"
                    errors.append(missing_variant(policy, pool, path, backend.variant))
            if route.fallback is not None and pool.spec.variant(route.fallback) is None:
                path = f"spec.routes[{r_index}].fallback"
                errors.append(missing_variant(policy, pool, path, route.fallback))
        for d_index, rule in enumerate(policy.spec.degrade):
            for attr in ("variant", "fallback"):
                name = getattr(rule, attr)
                if pool.spec.variant(name) is None:
                    path = f"spec.degrade[{d_index}].{attr}"
                    errors.append(missing_variant(policy, pool, path, name))
    return errors


def load_resources(paths: Sequence[str | Path]) -> Resources:
    """All modelfleet objects under `paths`, validated and cross-checked, or InvalidInput."""
    resources = Resources()
    errors: list[InputError] = []
    sources: dict[int, str] = {}
    seen: dict[tuple[str, str, str], str] = {}
    for source, doc in iter_documents(paths):
        obj, problems = parse_resource(doc, source)
        errors.extend(problems)
        if obj is None:
            continue
        key = (obj.kind, obj.namespace, obj.name)
        if key in seen:
            errors.append(
                InputError(
                    source,
                    obj.ref,
                    "metadata.name",
                    f"defined twice (first in {seen[key]}): rename or remove one",
                )
            )
            continue
        seen[key] = source
        sources[id(obj)] = source
        if isinstance(obj, ModelPool):
            resources.pools.append(obj)
        elif isinstance(obj, Reservation):
            resources.reservations.append(obj)
        else:
            resources.policies.append(obj)
    errors.extend(check_references(resources, sources))
    if errors:
        raise InvalidInput(errors)
    return resources
