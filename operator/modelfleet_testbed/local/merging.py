"""How patches merge into objects: JSON merge patch, strategic merge patch, JSON patch.

Strategic merge patch and server-side apply need to know which lists are maps keyed by
some fields (`containers` by `name`), which are sets (`finalizers`) and which are atomic
(replaced whole). The real API server reads that from Go struct tags and OpenAPI; here it
is a table per kind, covering the fields the operator and kubectl touch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer

Path = tuple[str, ...]  # field names from the object's root; list items are not in the path


@dataclass(frozen=True)
class MapList:
    """A list of objects identified by `keys` (the first key is the strategic merge key)."""

    keys: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def identity(self, item: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(item.get(key, self.defaults.get(key)) for key in self.keys)

    def merge_identity(self, item: Mapping[str, Any]) -> Any:
        return item.get(self.keys[0], self.defaults.get(self.keys[0]))


@dataclass(frozen=True)
class SetList:
    """A list of scalars merged as a set, order kept."""


SET = SetList()
ListStrategy = MapList | SetList | None  # None: atomic, replaced whole
ListSchema = Mapping[Path, MapList | SetList]

_BY_NAME = MapList(("name",))
_CONTAINER_LISTS: dict[Path, MapList | SetList] = {
    ("env",): _BY_NAME,
    ("ports",): MapList(("containerPort", "protocol"), {"protocol": "TCP"}),
    ("volumeMounts",): MapList(("mountPath",)),
    ("volumeDevices",): MapList(("devicePath",)),
    ("resizePolicy",): MapList(("resourceName",)),
}
_POD_SPEC_LISTS: dict[Path, MapList | SetList] = {
    ("volumes",): _BY_NAME,
    ("imagePullSecrets",): _BY_NAME,
    ("hostAliases",): MapList(("ip",)),
    ("resourceClaims",): _BY_NAME,
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC_LISTS[(_containers,)] = _BY_NAME
    for _sub, _strategy in _CONTAINER_LISTS.items():
        _POD_SPEC_LISTS[(_containers, *_sub)] = _strategy

METADATA_LISTS: dict[Path, MapList | SetList] = {
    ("metadata", "ownerReferences"): MapList(("uid",)),
    ("metadata", "finalizers"): SET,
}
_CONDITIONS = {("status", "conditions"): MapList(("type",))}


def _under(prefix: Path, lists: Mapping[Path, MapList | SetList]) -> dict[Path, MapList | SetList]:
    return {prefix + path: strategy for path, strategy in lists.items()}


BUILTIN_LIST_SCHEMAS: dict[str, ListSchema] = {
    "Pod": {**METADATA_LISTS, **_under(("spec",), _POD_SPEC_LISTS), **_CONDITIONS},
    "Deployment": {
        **METADATA_LISTS,
        **_under(("spec", "template", "spec"), _POD_SPEC_LISTS),
        **_CONDITIONS,
    },
    "Service": {
        **METADATA_LISTS,
        ("spec", "ports"): MapList(("port", "protocol"), {"protocol": "TCP"}),
    },
    "Namespace": {**METADATA_LISTS, **_CONDITIONS},
}


class PatchError(ValueError):
    """A patch the API server rejects as unprocessable (422)."""


def merge_patch(live: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: maps merge, `null` deletes, lists are replaced."""
    result = dict(live)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patch(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = merge_patch({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def json_patch(live: Mapping[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch; a failed `test` or a missing path is a 422 like the real server's."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(copy.deepcopy(dict(live)), operations, in_place=True)
    except jsonpatch.JsonPatchTestFailed as error:
        raise PatchError(f"the JSON patch test failed: {error}") from error
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
        raise PatchError(f"the JSON patch does not apply: {error}") from error


def strategy_of(schema: ListSchema, path: Path) -> ListStrategy:
    return schema.get(path)


def strategic_merge_patch(
    live: Mapping[str, Any], patch: Mapping[str, Any], schema: ListSchema, path: Path = ()
) -> dict[str, Any]:
    """Strategic merge patch: lists with a merge key merge item by item, with the
    `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` directives."""
    if patch.get("$patch") == "replace":
        return strategic_merge_patch(
            {}, {k: v for k, v in patch.items() if k != "$patch"}, schema, path
        )
    if patch.get("$patch") == "delete":
        return {}
    result = dict(live)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name) or [] if item not in value]
            continue
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            base = result.get(key) if isinstance(result.get(key), Mapping) else {}
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(base, value, schema, sub)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, strategy_of(schema, sub), schema, sub)
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _ordered(result[name], order, strategy_of(schema, (*path, name)))
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"])
        result = {key: value for key, value in result.items() if key in keep}
    return result


def _merge_list(
    live: Any, patch: list[Any], strategy: ListStrategy, schema: ListSchema, path: Path
) -> list[Any]:
    clean = [item for item in patch if not (isinstance(item, Mapping) and item.get("$patch"))]
    if strategy is None or not isinstance(live, list):
        if isinstance(strategy, MapList):
            return [strategic_merge_patch({}, item, schema, path) for item in clean]
        return copy.deepcopy(clean)
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [strategic_merge_patch({}, item, schema, path) for item in clean]
    if isinstance(strategy, SetList):
        merged = list(live)
        merged.extend(item for item in patch if item not in merged)
        return merged
    merged = list(live)
    for item in patch:
        if not isinstance(item, Mapping):
            raise PatchError(f"{'.'.join(path)}: list items must be objects with a merge key")
        key = strategy.merge_identity(item)
        index = next(
            (i for i, existing in enumerate(merged) if strategy.merge_identity(existing) == key),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(strategic_merge_patch({}, item, schema, path))
        else:
            merged[index] = strategic_merge_patch(merged[index], item, schema, path)
    return merged


def _ordered(items: list[Any], order: list[Any], strategy: ListStrategy) -> list[Any]:
    def identity(item: Any) -> str:
        if isinstance(strategy, MapList) and isinstance(item, Mapping):
            return json.dumps(strategy.merge_identity(item))
        return json.dumps(item, sort_keys=True)

    rank = {identity(item): index for index, item in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(identity(item), len(rank)))
