"""Server-side apply: field ownership in `metadata.managedFields`, conflicts, removal.

A field path is a tuple of FieldsV1 elements: `f:spec`, `k:{"name":"vllm"}` (an item of
a keyed list), `v:"finalizer"` (an item of a set). Every manager of an object owns a set
of such paths. An apply by one manager:

- conflicts (409) on a field another manager owns with a different value, unless forced
  (then ownership moves to the applier);
- merges the applied configuration into the object (keyed lists item by item);
- removes the fields the applier owned before, no longer applies, and nobody else owns.

Other writes (create, update, patch) move the fields they change to the writing manager,
so a later apply conflicts with, say, `kubectl scale` the way a real cluster does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelfleet_testbed.local.merging import ListSchema, MapList, Path, SetList

FieldPath = tuple[str, ...]
_MISSING = object()
_TRACKED_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")


class ApplyConflict(Exception):
    """Fields another manager owns with other values; the 409 body names each one."""

    def __init__(self, conflicts: list[tuple[str, FieldPath]]):
        self.conflicts = conflicts
        lines = [f'conflict with "{manager}": {dotted(path)}' for manager, path in conflicts]
        super().__init__(
            f"Apply failed with {len(conflicts)} conflict(s): "
            + "; ".join(lines)
            + " (re-apply with force to take ownership)"
        )


def dotted(path: FieldPath) -> str:
    parts = []
    for element in path:
        kind, _, text = element.partition(":")
        parts.append(f".{text}" if kind == "f" else f"[{text}]")
    return "".join(parts)


def _space_of(subresource: str) -> str:
    # `/scale` writes own `spec.replicas` of the main object; only `/status` is apart.
    return "status" if subresource == "status" else ""


def _space(entry: ManagerEntry) -> str:
    return _space_of(entry.subresource)


@dataclass
class ManagerEntry:
    manager: str
    operation: str  # "Apply" or "Update"
    subresource: str = ""
    api_version: str = ""
    time: str = ""
    fields: set[FieldPath] = field(default_factory=set)

    def same_owner(self, manager: str, operation: str, subresource: str) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)


def tracked_part(obj: Mapping[str, Any], *, status_separate: bool, subresource: str) -> dict:
    """The part of an object whose fields have owners (no name, uid, apiVersion...)."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    part = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if status_separate:
        part.pop("status", None)
    metadata = obj.get("metadata") or {}
    kept = {key: metadata[key] for key in _TRACKED_METADATA if metadata.get(key) is not None}
    if kept:
        part["metadata"] = kept
    return part


def field_paths(
    obj: Any, schema: ListSchema, path: Path = (), prefix: FieldPath = ()
) -> set[FieldPath]:
    """Every owned path of a (tracked part of an) object, keyed-list items included."""
    paths: set[FieldPath] = set()
    if not isinstance(obj, Mapping):
        return paths
    for key, value in obj.items():
        sub, element = (*path, key), (*prefix, f"f:{key}")
        strategy = schema.get(sub)
        if isinstance(value, Mapping) and value:
            paths |= field_paths(value, schema, sub, element)
        elif isinstance(value, list) and isinstance(strategy, MapList):
            for item in value:
                item_path = (*element, _item_element(strategy, item))
                paths.add(item_path)
                paths |= field_paths(item, schema, sub, item_path)
        elif isinstance(value, list) and isinstance(strategy, SetList):
            paths |= {(*element, f"v:{_json(item)}") for item in value}
        else:
            paths.add(element)
    return paths


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _item_element(strategy: MapList, item: Mapping[str, Any]) -> str:
    identity = dict(zip(strategy.keys, strategy.identity(item), strict=True))
    return f"k:{_json(identity)}"


def value_at(obj: Any, path: FieldPath, schema: ListSchema) -> Any:
    names: Path = ()
    current = obj
    for element in path:
        kind, _, text = element.partition(":")
        if kind == "f":
            if not isinstance(current, Mapping) or text not in current:
                return _MISSING
            current = current[text]
            names = (*names, text)
        elif kind == "k":
            strategy = schema.get(names)
            wanted = json.loads(text)
            if not isinstance(current, list) or not isinstance(strategy, MapList):
                return _MISSING
            current = next(
                (
                    item
                    for item in current
                    if isinstance(item, Mapping)
                    and dict(zip(strategy.keys, strategy.identity(item), strict=True)) == wanted
                ),
                _MISSING,
            )
            if current is _MISSING:
                return _MISSING
        else:
            wanted = json.loads(text)
            return wanted if isinstance(current, list) and wanted in current else _MISSING
    return current


def _remove_at(obj: dict, path: FieldPath, schema: ListSchema) -> None:
    parent = value_at(obj, path[:-1], schema) if len(path) > 1 else obj
    kind, _, text = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif kind in ("k", "v") and isinstance(parent, list):
        target = value_at(obj, path, schema)
        if target is not _MISSING:
            parent.remove(target)


def _is_comparable(path: FieldPath, value: Any) -> bool:
    return not path[-1].startswith("k:") and not (isinstance(value, Mapping) and value)


def with_item_ancestors(paths: Iterable[FieldPath]) -> set[FieldPath]:
    """Owning a field inside a list item means owning the item too."""
    result = set(paths)
    for path in list(result):
        for index, element in enumerate(path[:-1]):
            if element.startswith(("k:", "v:")):
                result.add(path[: index + 1])
    return result


def apply_merge(live: Any, config: Any, schema: ListSchema, path: Path = ()) -> Any:
    """Merge an applied configuration into the live object (keyed lists item by item)."""
    if not isinstance(config, Mapping) or not isinstance(live, Mapping):
        return copy.deepcopy(config)
    result = dict(live)
    for key, value in config.items():
        sub = (*path, key)
        strategy = schema.get(sub)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            if isinstance(strategy, MapList):
                merged = list(result[key])
                for item in value:
                    index = next(
                        (
                            i
                            for i, existing in enumerate(merged)
                            if strategy.identity(existing) == strategy.identity(item)
                        ),
                        None,
                    )
                    if index is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[index] = apply_merge(merged[index], item, schema, sub)
                result[key] = merged
            elif isinstance(strategy, SetList):
                result[key] = result[key] + [item for item in value if item not in result[key]]
            else:
                result[key] = copy.deepcopy(value)
        else:
            result[key] = apply_merge(result.get(key), value, schema, sub)
    return result


def parse_managed_fields(metadata: Mapping[str, Any]) -> list[ManagerEntry]:
    entries = []
    for raw in metadata.get("managedFields") or []:
        entries.append(
            ManagerEntry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                subresource=raw.get("subresource", ""),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                fields=_paths_of(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def _paths_of(node: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    if not node and prefix:
        paths.add(prefix)
    for key, child in node.items():
        if key == ".":
            paths.add(prefix)
        else:
            paths |= _paths_of(child, (*prefix, key))
    return paths


def render_managed_fields(entries: list[ManagerEntry]) -> list[dict[str, Any]]:
    rendered = []
    for entry in entries:
        if not entry.fields:
            continue
        tree: dict[str, Any] = {}
        for path in sorted(entry.fields):
            node = tree
            for element in path:
                node = node.setdefault(element, {})
            if path[-1].startswith(("k:", "v:")):
                node["."] = {}
        raw: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
            "time": entry.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": tree,
        }
        if entry.subresource:
            raw["subresource"] = entry.subresource
        rendered.append(raw)
    return rendered


def _own_entry(
    entries: list[ManagerEntry], manager: str, operation: str, subresource: str
) -> ManagerEntry:
    for entry in entries:
        if entry.same_owner(manager, operation, subresource):
            return entry
    entry = ManagerEntry(manager, operation, subresource)
    entries.append(entry)
    return entry


def server_side_apply(
    live: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    manager: str,
    force: bool,
    schema: ListSchema,
    status_separate: bool,
    subresource: str = "",
) -> tuple[dict[str, Any], list[ManagerEntry]]:
    """Apply `config` by `manager` onto `live` ({} for a new object).

    Returns the merged object (managedFields not yet rendered into it) and the entries."""
    entries = parse_managed_fields(live.get("metadata") or {})
    applied = tracked_part(config, status_separate=status_separate, subresource=subresource)
    current = tracked_part(live, status_separate=status_separate, subresource=subresource)
    new_fields = field_paths(applied, schema)
    conflicts: list[tuple[str, FieldPath]] = []
    for entry in entries:
        if entry.same_owner(manager, "Apply", subresource) or _space(entry) != _space_of(
            subresource
        ):
            continue
        for path in sorted(new_fields & entry.fields):
            ours, theirs = value_at(applied, path, schema), value_at(current, path, schema)
            if _is_comparable(path, ours) and theirs is not _MISSING and ours != theirs:
                conflicts.append((entry.manager, path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for entry in entries:
        if not entry.same_owner(manager, "Apply", subresource):
            entry.fields -= {path for _, path in conflicts}

    merged = apply_merge(copy.deepcopy(dict(live)), applied, schema)
    own = _own_entry(entries, manager, "Apply", subresource)
    others = set().union(*(e.fields for e in entries if e is not own))
    # Shortest first: a whole list item goes before the fields inside it are looked up.
    for path in sorted(own.fields - new_fields - others, key=len):
        _remove_at(merged, path, schema)
    own.fields = new_fields
    return merged, entries


def record_update(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    manager: str,
    schema: ListSchema,
    status_separate: bool,
    subresource: str = "",
) -> list[ManagerEntry]:
    """Give the fields a non-apply write changed to its manager (operation Update)."""
    entries = parse_managed_fields((old or {}).get("metadata") or {})
    before = tracked_part(old or {}, status_separate=status_separate, subresource=subresource)
    after = tracked_part(new, status_separate=status_separate, subresource=subresource)
    before_paths, after_paths = field_paths(before, schema), field_paths(after, schema)
    changed = {
        path
        for path in after_paths
        if path not in before_paths
        or value_at(before, path, schema) != value_at(after, path, schema)
    }
    changed = with_item_ancestors(changed)
    removed = before_paths - after_paths
    own = _own_entry(entries, manager, "Update", subresource)
    for entry in entries:
        entry.fields -= removed
        if entry is not own:
            entry.fields -= {path for path in changed if not path[-1].startswith("k:")}
    own.fields |= changed
    return entries
