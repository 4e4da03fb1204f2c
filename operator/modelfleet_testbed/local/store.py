"""The object store behind the local API server: what a write does to an object.

Every write is synchronous (no await inside), so each one is atomic in the event loop:
a watcher subscribes and snapshots in one step and never misses an event in between.
Objects live in kmock's `ObjectsArray` (so tests can read `emulator.objects[...]`); the
dicts stored there are never mutated, every write stores a new one.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kmock

from modelfleet_testbed.local.admission import Admission
from modelfleet_testbed.local.apply import (
    ApplyConflict,
    ManagerEntry,
    dotted,
    parse_managed_fields,
    record_update,
    render_managed_fields,
    server_side_apply,
)
from modelfleet_testbed.local.cluster_ips import (
    HEADLESS,
    ClusterIPAllocator,
    gets_cluster_ip,
    requested_ip,
    tcp_ports,
)
from modelfleet_testbed.local.errors import ApiError, conflict, not_found
from modelfleet_testbed.local.merging import (
    BUILTIN_LIST_SCHEMAS,
    METADATA_LISTS,
    ListSchema,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from modelfleet_testbed.local.selectors import match_labels_selector

NAMESPACES = kmock.resource("", "v1", "namespaces")
SERVICES = kmock.resource("", "v1", "services")
PATCH_TYPES = ("json", "merge", "strategic", "apply")
_GENERATED_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_GENERATION_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}
_UNTOUCHABLE_METADATA = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ResourceType:
    resource: kmock.resource
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    list_schema: ListSchema = field(default_factory=lambda: METADATA_LISTS)
    custom: bool = False  # served from a CRD: no strategic merge patch, like a real server
    # The OpenAPI v3 schema of the whole object: a CRD's openAPIV3Schema (admission checks
    # custom resources against it) or a built-in kind's minimal one (see builtin_kinds).
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()  # a CRD's additionalPrinterColumns

    @property
    def api_version(self) -> str:
        group, version = self.resource.group, self.resource.version
        return f"{group}/{version}" if group else str(version)

    @property
    def qualified_plural(self) -> str:
        group = self.resource.group
        return f"{self.resource.plural}.{group}" if group else str(self.resource.plural)

    @property
    def status_separate(self) -> bool:
        return "status" in self.subresources

    @property
    def tracks_generation(self) -> bool:
        return self.custom or self.kind in _GENERATION_KINDS


@dataclass(frozen=True)
class StoredEvent:
    revision: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]
    previous: dict[str, Any] | None


@dataclass(eq=False)
class Subscription:
    resource: kmock.resource | None  # None: every resource
    namespace: str | None
    queue: asyncio.Queue[StoredEvent | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: StoredEvent) -> bool:
        namespace = event.object.get("metadata", {}).get("namespace")
        same_resource = self.resource is None or event.resource == self.resource
        return same_resource and self.namespace in (None, namespace)


class Expired(Exception):
    """A watch asked for a resourceVersion older than the retained event log."""


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = dict(obj.get("metadata") or {})
    metadata.pop("resourceVersion", None)
    metadata["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in metadata.get("managedFields") or []
    ]
    return {**obj, "metadata": metadata}


class ObjectStore:
    def __init__(
        self,
        objects: kmock.ObjectsArray,
        *,
        versions_kept: int = 4,
        events_kept: int = 4096,
        first_revision: int = 1000,
    ):
        self.objects = objects
        self.types: dict[kmock.resource, ResourceType] = {}
        self._revision = first_revision
        self._versions_kept = versions_kept
        self._log: collections.deque[StoredEvent] = collections.deque(maxlen=events_kept)
        self._log_floor = first_revision
        self._subscriptions: set[Subscription] = set()
        self._terminating: set[str] = set()
        self._cluster_ips = ClusterIPAllocator()

    # -- resource types --------------------------------------------------------------------

    def register(
        self,
        resource: str | kmock.resource,
        *,
        kind: str,
        namespaced: bool,
        subresources: Iterable[str] = (),
        list_schema: ListSchema | None = None,
        custom: bool = False,
        schema: Mapping[str, Any] | None = None,
        printer_columns: Iterable[Mapping[str, Any]] = (),
    ) -> ResourceType:
        res = kmock.resource(resource)
        lists = list_schema if list_schema is not None else BUILTIN_LIST_SCHEMAS.get(kind)
        resource_type = ResourceType(
            resource=res,
            kind=kind,
            namespaced=namespaced,
            subresources=frozenset(subresources),
            list_schema=lists if lists is not None else METADATA_LISTS,
            custom=custom,
            schema=schema,
            printer_columns=tuple(printer_columns),
        )
        self.types[res] = resource_type
        return resource_type

    def type_of(self, resource: str | kmock.resource) -> ResourceType:
        res = kmock.resource(resource)
        try:
            return self.types[res]
        except KeyError:
            raise ApiError(404, "the server could not find the requested resource") from None

    @property
    def revision(self) -> int:
        return self._revision

    # -- reads -----------------------------------------------------------------------------

    def _live(self, key: tuple[kmock.resource, str | None, str]) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else stored.last.raw

    def get_raw(
        self, resource: str | kmock.resource, namespace: str | None, name: str
    ) -> dict | None:
        """The stored dict itself (do not mutate); None if absent."""
        resource_type = self.type_of(resource)
        return self._live((resource_type.resource, self._scope(resource_type, namespace), name))

    def get(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict | None:
        return copy.deepcopy(self.get_raw(resource, namespace, name))

    def list_raw(
        self,
        resource: str | kmock.resource,
        namespace: str | None = None,
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        resource_type = self.type_of(resource)
        found = []
        for (res, ns, _), stored in self.objects.items():
            if res != resource_type.resource or stored.deleted:
                continue
            if namespace is not None and ns != namespace:
                continue
            raw = stored.last.raw
            if predicate is None or predicate(raw):
                found.append(raw)
        found.sort(
            key=lambda obj: (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        )
        return found

    def list(
        self,
        resource: str | kmock.resource,
        namespace: str | None = None,
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        return copy.deepcopy(self.list_raw(resource, namespace, predicate))

    def live_objects(self) -> Iterator[tuple[kmock.resource, dict[str, Any]]]:
        """Every existing object of every resource (stored dicts: do not mutate)."""
        for (resource, _, _), stored in list(self.objects.items()):
            if not stored.deleted and resource in self.types:
                yield resource, stored.last.raw

    # -- writes ----------------------------------------------------------------------------

    def create(
        self,
        resource: str | kmock.resource,
        body: Any,
        *,
        namespace: str | None = None,
        manager: str = "",
        dry_run: bool = False,
        admission: Admission | None = None,
        _entries: list[ManagerEntry] | None = None,
    ) -> dict[str, Any]:
        """Store a new object; `admission` (the API server's requests pass one) prunes,
        defaults and validates it first."""
        resource_type = self.type_of(resource)
        if not isinstance(body, Mapping):
            raise ApiError(400, "the request body must be a JSON or YAML object")
        obj = copy.deepcopy(dict(body))
        metadata = dict(obj.get("metadata") or {})
        ns = self._namespace_for(resource_type, namespace, metadata)
        self._check_type(resource_type, obj)
        name = metadata.get("name") or self._generated_name(resource_type, ns, metadata)
        key = (resource_type.resource, ns, name)
        if self._live(key) is not None:
            raise ApiError(
                409,
                f'{resource_type.qualified_plural} "{name}" already exists',
                reason="AlreadyExists",
                details={"name": name, "kind": resource_type.resource.plural},
            )
        if resource_type.namespaced:
            self._require_namespace(ns)
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(transient, None)
        metadata.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if ns is not None:
            metadata["namespace"] = ns
        else:
            metadata.pop("namespace", None)
        if resource_type.tracks_generation:
            metadata["generation"] = 1
        else:
            metadata.pop("generation", None)
        obj.update(apiVersion=resource_type.api_version, kind=resource_type.kind, metadata=metadata)
        if resource_type.status_separate:
            obj.pop("status", None)
        obj = _defaulted(resource_type, obj)
        if admission is not None:
            obj = admission.admit(resource_type, obj, None)
        if resource_type.resource == SERVICES:
            self._assign_cluster_ip(obj, None, dry_run=dry_run)
        entries = _entries
        if entries is None:
            entries = record_update(
                None,
                obj,
                manager=manager,
                schema=resource_type.list_schema,
                status_separate=resource_type.status_separate,
            )
        self._stamp_entries(resource_type, entries, manager, None)
        metadata["managedFields"] = render_managed_fields(entries)
        if not metadata["managedFields"]:
            del metadata["managedFields"]
        if dry_run:
            return obj
        return self._commit(resource_type, key, None, obj, "ADDED")

    def replace(
        self,
        resource: str | kmock.resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        manager: str = "",
        dry_run: bool = False,
        admission: Admission | None = None,
    ) -> dict[str, Any]:
        """PUT: replace the object (create it if absent), its status, or its scale."""
        resource_type = self.type_of(resource)
        if not isinstance(body, Mapping):
            raise ApiError(400, "the request body must be a JSON or YAML object")
        if subresource == "scale":
            return self._write_scale(
                resource_type, namespace, name, lambda _: body, manager, dry_run, admission
            )
        self._check_subresource(resource_type, subresource)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise ApiError(
                400, f"the name of the object ({body_name}) does not match the URL ({name})"
            )
        key = (resource_type.resource, self._scope(resource_type, namespace), name)
        old = self._live(key)
        if old is None:
            if subresource:
                raise not_found(resource_type.qualified_plural, name)
            body = {**body, "metadata": {**(body.get("metadata") or {}), "name": name}}
            return self.create(
                resource_type.resource,
                body,
                namespace=namespace,
                manager=manager,
                dry_run=dry_run,
                admission=admission,
            )
        return self._replace(
            resource_type,
            key,
            old,
            dict(body),
            manager,
            subresource,
            dry_run=dry_run,
            admission=admission,
        )

    def patch(
        self,
        resource: str | kmock.resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: str,
        subresource: str | None = None,
        manager: str = "",
        force: bool = False,
        dry_run: bool = False,
        admission: Admission | None = None,
    ) -> dict[str, Any]:
        resource_type = self.type_of(resource)
        if patch_type not in PATCH_TYPES:
            raise ApiError(415, f"unsupported patch type {patch_type!r}")
        if patch_type == "strategic" and resource_type.custom:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if patch_type == "apply":
            return self._apply(
                resource_type,
                namespace,
                name,
                body,
                manager,
                force,
                subresource,
                dry_run,
                admission,
            )
        if subresource == "scale":
            return self._write_scale(
                resource_type,
                namespace,
                name,
                lambda scale: _patched(scale, body, patch_type, resource_type.list_schema),
                manager,
                dry_run,
                admission,
            )
        self._check_subresource(resource_type, subresource)
        key = (resource_type.resource, self._scope(resource_type, namespace), name)
        old = self._live(key)
        if old is None:
            raise not_found(resource_type.qualified_plural, name)
        candidate = _patched(old, body, patch_type, resource_type.list_schema)
        return self._replace(
            resource_type,
            key,
            old,
            candidate,
            manager,
            subresource,
            dry_run=dry_run,
            admission=admission,
        )

    def delete(
        self,
        resource: str | kmock.resource,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        resource_type = self.type_of(resource)
        key = (resource_type.resource, self._scope(resource_type, namespace), name)
        old = self._live(key)
        if old is None:
            raise not_found(resource_type.qualified_plural, name)
        metadata = old["metadata"]
        for field_name in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != metadata.get(field_name):
                raise ApiError(
                    409,
                    f"Precondition failed: {field_name} in precondition: {wanted}, "
                    f"{field_name} in object meta: {metadata.get(field_name)}",
                )
        if dry_run:
            return old
        if resource_type.resource == NAMESPACES:
            return self._terminate_namespace(old)
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return old
            marked = copy.deepcopy(old)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
            return self._commit(resource_type, key, old, marked, "MODIFIED")
        return self._remove(resource_type, key, old)

    # -- scale -----------------------------------------------------------------------------

    def scale_of(self, resource_type: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        metadata = obj["metadata"]
        match_labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: metadata[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in metadata
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": match_labels_selector(match_labels),
            },
        }

    def get_scale(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict:
        resource_type = self.type_of(resource)
        self._check_subresource(resource_type, "scale")
        obj = self.get_raw(resource_type.resource, namespace, name)
        if obj is None:
            raise not_found(resource_type.qualified_plural, name)
        return self.scale_of(resource_type, obj)

    def _write_scale(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], Any],
        manager: str,
        dry_run: bool,
        admission: Admission | None = None,
    ) -> dict[str, Any]:
        self._check_subresource(resource_type, "scale")
        key = (resource_type.resource, self._scope(resource_type, namespace), name)
        old = self._live(key)
        if old is None:
            raise not_found(resource_type.qualified_plural, name)
        scale = change(self.scale_of(resource_type, old))
        replicas = ((scale or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f"Scale.spec.replicas: Invalid value: {replicas!r}: must be >= 0")
        wanted_version = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise conflict(resource_type.qualified_plural, name)
        candidate = copy.deepcopy(old)
        candidate.setdefault("spec", {})["replicas"] = replicas
        new = self._replace(
            resource_type,
            key,
            old,
            candidate,
            manager,
            "scale",
            dry_run=dry_run,
            admission=admission,
        )
        return self.scale_of(resource_type, new)

    # -- watching --------------------------------------------------------------------------

    def subscribe(
        self, resource: kmock.resource | None, namespace: str | None = None
    ) -> Subscription:
        subscription = Subscription(resource, namespace)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def events_since(self, resource: kmock.resource, revision: int) -> list[StoredEvent]:
        if revision < self._log_floor:
            raise Expired(f"too old resource version: {revision} ({self._log_floor})")
        return [e for e in self._log if e.revision > revision and e.resource == resource]

    async def watch(
        self, resource: str | kmock.resource, namespace: str | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """In-process watch: ADDED for what exists, then every change, until `close()`."""
        resource_type = self.type_of(resource)
        subscription = self.subscribe(resource_type.resource, namespace)
        try:
            for obj in self.list(resource_type.resource, namespace):
                yield "ADDED", obj
            while (event := await subscription.queue.get()) is not None:
                yield event.type, copy.deepcopy(event.object)
        finally:
            self.unsubscribe(subscription)

    def close(self) -> None:
        """End every watch (in-process and HTTP) so servers can stop."""
        for subscription in list(self._subscriptions):
            subscription.queue.put_nowait(None)

    # -- internals -------------------------------------------------------------------------

    def _scope(self, resource_type: ResourceType, namespace: str | None) -> str | None:
        return namespace if resource_type.namespaced else None

    def _namespace_for(
        self, resource_type: ResourceType, namespace: str | None, metadata: Mapping[str, Any]
    ) -> str | None:
        if not resource_type.namespaced:
            return None
        in_body = metadata.get("namespace")
        if namespace and in_body and namespace != in_body:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        ns = namespace or in_body
        if not ns:
            raise ApiError(400, "a namespace is required for a namespaced resource")
        return ns

    def _check_type(self, resource_type: ResourceType, obj: Mapping[str, Any]) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != resource_type.kind:
            raise ApiError(400, f"kind {kind!r} does not match the resource ({resource_type.kind})")
        if api_version and api_version != resource_type.api_version:
            raise ApiError(
                400,
                f"apiVersion {api_version!r} does not match the resource ({resource_type.api_version})",
            )

    def _check_subresource(self, resource_type: ResourceType, subresource: str | None) -> None:
        if subresource and subresource not in resource_type.subresources:
            raise ApiError(404, "the server could not find the requested resource")

    def _generated_name(
        self, resource_type: ResourceType, namespace: str | None, metadata: Mapping[str, Any]
    ) -> str:
        prefix = metadata.get("generateName")
        if not prefix:
            raise ApiError(422, "metadata.name: Required value: name or generateName is required")
        for _ in range(16):
            name = prefix + "".join(random.choices(_GENERATED_NAME_CHARS, k=5))
            if self._live((resource_type.resource, namespace, name)) is None:
                return name
        raise ApiError(
            409, f"could not generate a unique name from {prefix!r}", reason="AlreadyExists"
        )

    def _require_namespace(self, namespace: str | None) -> None:
        if namespace is None or self._live((NAMESPACES, None, namespace)) is None:
            raise not_found("namespaces", str(namespace))
        if namespace in self._terminating:
            raise ApiError(
                403,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _replace(
        self,
        resource_type: ResourceType,
        key: tuple[kmock.resource, str | None, str],
        old: dict[str, Any],
        candidate: dict[str, Any],
        manager: str,
        subresource: str | None,
        *,
        entries: list[ManagerEntry] | None = None,
        dry_run: bool = False,
        admission: Admission | None = None,
    ) -> dict[str, Any]:
        self._check_type(resource_type, candidate)
        wanted_version = (candidate.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise conflict(resource_type.qualified_plural, old["metadata"]["name"])
        if subresource == "status":
            new = {**copy.deepcopy(old), "status": copy.deepcopy(candidate.get("status"))}
            if new["status"] is None:
                del new["status"]
        else:
            new = copy.deepcopy(candidate)
            metadata = dict(new.get("metadata") or {})
            for name in _UNTOUCHABLE_METADATA + ("deletionGracePeriodSeconds", "generation"):
                if name in old["metadata"]:
                    metadata[name] = old["metadata"][name]
                else:
                    metadata.pop(name, None)
            new["metadata"] = metadata
            if resource_type.status_separate:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        new.update(apiVersion=resource_type.api_version, kind=resource_type.kind)
        new = _defaulted(resource_type, new)
        if admission is not None:
            new = admission.admit(resource_type, new, old)
        if resource_type.resource == SERVICES:
            self._assign_cluster_ip(new, old, dry_run=dry_run)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        new["metadata"]["managedFields"] = old["metadata"].get("managedFields", [])
        if resource_type.tracks_generation and _spec_part(old) != _spec_part(new):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        if entries is None:
            entries = record_update(
                old,
                new,
                manager=manager,
                schema=resource_type.list_schema,
                status_separate=resource_type.status_separate,
                subresource=subresource or "",
            )
        rendered = render_managed_fields(entries)
        new["metadata"]["managedFields"] = rendered
        if not rendered:
            del new["metadata"]["managedFields"]
        if _comparable(new) == _comparable(old):
            return old  # a no-op write changes nothing, not even the resourceVersion
        self._stamp_entries(resource_type, entries, manager, subresource)
        new["metadata"]["managedFields"] = render_managed_fields(entries)
        if not new["metadata"]["managedFields"]:
            del new["metadata"]["managedFields"]
        if dry_run:
            return new
        committed = self._commit(resource_type, key, old, new, "MODIFIED")
        metadata = committed["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return self._remove(resource_type, key, committed)
        return committed

    def _apply(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        manager: str,
        force: bool,
        subresource: str | None,
        dry_run: bool,
        admission: Admission | None = None,
    ) -> dict[str, Any]:
        if not isinstance(config, Mapping):
            raise ApiError(400, "the applied configuration must be an object")
        if not manager:
            raise ApiError(422, "PATCH requests with apply content type must specify fieldManager")
        for required in ("apiVersion", "kind"):
            if not config.get(required):
                raise ApiError(400, f"{required} must be set in the applied configuration")
        self._check_type(resource_type, config)
        self._check_subresource(resource_type, subresource)
        metadata = config.get("metadata") or {}
        if metadata.get("name") not in (None, name):
            raise ApiError(
                400, f"the name of the object ({metadata['name']}) does not match the URL ({name})"
            )
        ns = self._scope(resource_type, namespace)
        if ns and metadata.get("namespace") not in (None, ns):
            raise ApiError(400, "the namespace of the applied object does not match the URL")
        key = (resource_type.resource, ns, name)
        old = self._live(key)
        try:
            merged, entries = server_side_apply(
                old or {},
                config,
                manager=manager,
                force=force,
                schema=resource_type.list_schema,
                status_separate=resource_type.status_separate,
                subresource=subresource or "",
            )
        except ApplyConflict as error:
            raise ApiError(
                409,
                str(error),
                details={
                    "name": name,
                    "kind": resource_type.resource.plural,
                    "causes": [
                        {
                            "type": "FieldManagerConflict",
                            "message": f'conflict with "{who}"',
                            "field": dotted(path),
                        }
                        for who, path in error.conflicts
                    ],
                },
            ) from error
        if old is None:
            if subresource:
                raise not_found(resource_type.qualified_plural, name)
            merged.update(apiVersion=resource_type.api_version, kind=resource_type.kind)
            merged["metadata"] = {**merged.get("metadata", {}), "name": name}
            return self.create(
                resource_type.resource,
                merged,
                namespace=ns,
                manager=manager,
                dry_run=dry_run,
                admission=admission,
                _entries=entries,
            )
        merged["metadata"] = {
            **merged.get("metadata", {}),
            **{"resourceVersion": metadata.get("resourceVersion")},
        }
        if not metadata.get("resourceVersion"):
            merged["metadata"].pop("resourceVersion")
        return self._replace(
            resource_type,
            key,
            old,
            merged,
            manager,
            subresource,
            entries=entries,
            dry_run=dry_run,
            admission=admission,
        )

    def _assign_cluster_ip(
        self, service: dict[str, Any], old: Mapping[str, Any] | None, *, dry_run: bool
    ) -> None:
        """Allocate `spec.clusterIP(s)` at create and keep them on every later write (a
        write that leaves them out keeps them, one that changes them is refused)."""
        spec = service.setdefault("spec", {})
        if not gets_cluster_ip(spec):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        old_spec = (old or {}).get("spec") or {}
        allocated = requested_ip(old_spec) if gets_cluster_ip(old_spec) else None
        wanted = requested_ip(spec)
        if allocated:
            if wanted not in (None, allocated):
                raise ApiError(
                    422,
                    f'Service "{service["metadata"]["name"]}" is invalid: spec.clusterIPs[0]: '
                    f'Invalid value: []string{{"{wanted}"}}: may not change once set '
                    f"(it is {allocated}; delete and re-create the Service to change it)",
                )
            address = allocated
        elif wanted == HEADLESS:
            address = HEADLESS
        else:
            in_use = {
                str((svc.get("spec") or {}).get("clusterIP"))
                for svc in self.list_raw(SERVICES)
                if svc["metadata"].get("uid") != service["metadata"].get("uid")
            }
            if wanted:
                self._cluster_ips.check_requested(wanted, in_use)
                address = wanted
            else:
                address = self._cluster_ips.allocate(in_use, tcp_ports(spec), dry_run=dry_run)
        spec["clusterIP"] = address
        spec["clusterIPs"] = [address]

    def _stamp_entries(
        self,
        resource_type: ResourceType,
        entries: list[ManagerEntry],
        manager: str,
        subresource: str | None,
    ) -> None:
        stamp = now_rfc3339()
        for entry in entries:
            if entry.manager == manager and entry.subresource == (subresource or ""):
                entry.time = stamp
                entry.api_version = resource_type.api_version
            entry.api_version = entry.api_version or resource_type.api_version
            entry.time = entry.time or stamp

    def _commit(
        self,
        resource_type: ResourceType,
        key: tuple[kmock.resource, str | None, str],
        old: dict[str, Any] | None,
        new: dict[str, Any],
        event_type: str,
    ) -> dict[str, Any]:
        self._revision += 1
        new["metadata"]["resourceVersion"] = str(self._revision)
        if key in self.objects:
            self.objects[key].create(new)
            self._trim(key)
        else:
            self.objects[key] = new
        self._publish(StoredEvent(self._revision, resource_type.resource, event_type, new, old))
        return new

    def _remove(
        self, resource_type: ResourceType, key: tuple[kmock.resource, str | None, str], old: dict
    ) -> dict[str, Any]:
        self._revision += 1
        final = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self._revision)}}
        self.objects[key].delete()
        self._trim(key)
        self._publish(StoredEvent(self._revision, resource_type.resource, "DELETED", final, old))
        namespace = key[1]
        if namespace in self._terminating:
            self._reap_namespace(namespace)
        return final

    def _trim(self, key: tuple[kmock.resource, str | None, str]) -> None:
        history = self.objects[key].history
        if len(history) > self._versions_kept:
            del history[: len(history) - self._versions_kept]

    def _publish(self, event: StoredEvent) -> None:
        if len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].revision
        self._log.append(event)
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.queue.put_nowait(event)

    def _terminate_namespace(self, namespace_obj: dict[str, Any]) -> dict[str, Any]:
        name = namespace_obj["metadata"]["name"]
        key = (NAMESPACES, None, name)
        if name not in self._terminating:
            self._terminating.add(name)
            marked = copy.deepcopy(namespace_obj)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["status"] = {"phase": "Terminating"}
            namespace_obj = self._commit(
                self.types[NAMESPACES], key, namespace_obj, marked, "MODIFIED"
            )
            for (res, ns, obj_name), stored in list(self.objects.items()):
                if ns == name and not stored.deleted:
                    self.delete(res, ns, obj_name)
        return self._reap_namespace(name) or namespace_obj

    def _reap_namespace(self, name: str) -> dict[str, Any] | None:
        if any(ns == name and not stored.deleted for (_, ns, _), stored in self.objects.items()):
            return None
        self._terminating.discard(name)
        key = (NAMESPACES, None, name)
        old = self._live(key)
        return self._remove(self.types[NAMESPACES], key, old) if old else None


def _patched(old: Mapping[str, Any], body: Any, patch_type: str, schema: ListSchema) -> dict:
    try:
        if patch_type == "json":
            return json_patch(old, body)
        if not isinstance(body, Mapping):
            raise ApiError(400, f"a {patch_type} merge patch must be a JSON object")
        if patch_type == "merge":
            return merge_patch(old, body)
        return strategic_merge_patch(old, body, schema)
    except PatchError as error:
        raise ApiError(422, str(error)) from error


def _defaulted(resource_type: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The few defaults of the real API server that clients of this project read back."""
    if resource_type.kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
    elif resource_type.kind == "Secret" and obj.get("stringData"):
        data = dict(obj.get("data") or {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    elif resource_type.kind == "Namespace":
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif resource_type.kind == "Pod":
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    return obj


def managers_of(obj: Mapping[str, Any]) -> list[ManagerEntry]:
    """The parsed field managers of an object (for tests and tools)."""
    return parse_managed_fields(obj.get("metadata") or {})
