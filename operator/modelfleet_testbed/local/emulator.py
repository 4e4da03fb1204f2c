"""A local Kubernetes API server: kmock's KubernetesEmulator with a real server's semantics.

kmock 0.8 serves discovery and stores objects, but falls short of a real API server in
ways kopf and kubectl notice (see TESTBED-NOTES). This subclass keeps kmock's discovery,
resource registry and `objects` array, and answers every object request itself through
`ObjectStore`, which gives:

1. `uid`, `resourceVersion`, `creationTimestamp`, `generation` bumped on spec changes,
   the namespace taken from the URL; a failed JSON-patch `test` answers 422;
2. watches that subscribe before they snapshot and honour `?resourceVersion=`
   (replay from an event log, 410 Gone when it is too old);
3. `generateName`;
4. `GET /api/v1/namespaces` and `/api/v1/namespaces/NAME` parsed as namespaces;
5. strategic merge patch with keyed lists (containers, env, ports, volumes...);
6. PUT and server-side apply (`application/apply-patch+yaml`, `fieldManager`, `force`)
   of new and existing objects, with field ownership and conflicts;
7. for kubectl: lists with `kind`, watches sent as `application/json`, a `/scale`
   subresource answering an `autoscaling/v1` Scale, and the `sendInitialEvents` bookmark;
8. what kubectl needs with validation on and for printing: `/openapi/v2` and `/openapi/v3`
   built from the served schemas (openapi), admission of custom resources against their
   CRD (admission), server-side `Table` answers with printer columns (tables), Events
   counted instead of repeated (events), CRDs as objects that define what is served.

Object requests do not go through kmock's reaction DSL (a reaction would see the request
after the state changed); use `faults` to make calls fail and `calls` to see them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from modelfleet_testbed.local.admission import Admission
from modelfleet_testbed.local.cel_rules import compile_rules
from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.events import CORE_EVENTS, record_event
from modelfleet_testbed.local.faults import ApiCall, CallLog, FaultInjector, call_verb
from modelfleet_testbed.local.merging import ListSchema
from modelfleet_testbed.local.openapi import OpenApiDocuments
from modelfleet_testbed.local.selectors import Predicate, SelectorError, object_selector
from modelfleet_testbed.local.store import Expired, ObjectStore, ResourceType, StoredEvent
from modelfleet_testbed.local.tables import Printer, printer_for, table, wants_table

logger = logging.getLogger(__name__)

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_INITIAL_EVENTS_END = "k8s.io/initial-events-end"
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


@dataclass(frozen=True)
class ApiPath:
    group: str | None
    version: str | None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Split an API URL path; `/api/v1/namespaces[/NAME[/status]]` are namespaces themselves."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ApiPath(group=parts[1], version=None)
    else:
        return None
    namespace = None
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0] if rest else None,
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def _manager_from_agent(user_agent: str) -> str:
    # The real server's default field manager is the User-Agent's product name.
    return (user_agent.split("/", 1)[0] or "unknown").strip() or "unknown"


def _json_response(
    payload: Any, status: int = 200, warnings: Iterable[str] = ()
) -> aiohttp.web.Response:
    response = aiohttp.web.Response(
        text=json.dumps(payload), status=status, content_type="application/json"
    )
    for warning in warnings:
        # RFC 7234 warn-code 299, the way kube-apiserver sends admission warnings.
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


@dataclass(frozen=True)
class TableRequest:
    """A request for `meta.k8s.io` Tables (`kubectl get` asks for them)."""

    version: str
    include_object: str
    printer: Printer


def _encode_continue(namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([namespace, name]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as error:
        raise ApiError(400, f"invalid continue token {token!r}") from error
    return namespace, name


def _watch_type(event: StoredEvent, predicate: Predicate) -> str | None:
    """What a selective watcher sees: objects entering or leaving the selection."""
    now = predicate(event.object)
    if event.type != "MODIFIED":
        return event.type if now else None
    before = event.previous is not None and predicate(event.previous)
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """The local API server's request handler; serve it with `LocalCluster`."""

    requests_kept: int = 2000
    watch_timeout_max: float = 1800.0
    bookmark_seconds: float = 10.0
    store: ObjectStore = attrs.field(init=False)
    faults: FaultInjector = attrs.field(factory=FaultInjector, init=False)
    calls: CallLog = attrs.field(factory=CallLog, init=False)
    openapi: OpenApiDocuments = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = ObjectStore(self._objects)
        self.openapi = OpenApiDocuments(self.store.types)

    # -- resources -------------------------------------------------------------------------

    def register(
        self,
        resource: str,
        *,
        kind: str,
        namespaced: bool,
        subresources: Iterable[str] = (),
        shortnames: Iterable[str] = (),
        categories: Iterable[str] = (),
        verbs: Iterable[str] = ALL_VERBS,
        list_schema: ListSchema | None = None,
        custom: bool = False,
        schema: Mapping[str, Any] | None = None,
        printer_columns: Iterable[Mapping[str, Any]] = (),
    ) -> ResourceType:
        """Serve a resource ("apps/v1/deployments") with these discovery facts, its OpenAPI
        schema (a CRD's openAPIV3Schema for custom resources) and printer columns."""
        resource_type = self.store.register(
            resource,
            kind=kind,
            namespaced=namespaced,
            subresources=subresources,
            list_schema=list_schema,
            custom=custom,
            schema=schema,
            printer_columns=printer_columns,
        )
        self._resources[resource_type.resource] = kmock.ResourceInfo(
            kind=kind,
            singular=kind.lower(),
            namespaced=namespaced,
            verbs=set(verbs),
            shortnames=set(shortnames),
            categories=set(categories),
            subresources=set(subresources),
        )
        return resource_type

    def serve_crd(self, crd: Mapping[str, Any]) -> list[ResourceType]:
        """Serve the custom resources a CustomResourceDefinition defines (each served
        version), with its names, schema, subresources and printer columns."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        served = []
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            compile_rules((version.get("schema") or {}).get("openAPIV3Schema") or {})
            served.append(
                self.register(
                    f"{spec['group']}/{version['name']}/{names['plural']}",
                    kind=names["kind"],
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    subresources=tuple(version.get("subresources") or {}),
                    shortnames=names.get("shortNames") or (),
                    categories=names.get("categories") or (),
                    custom=True,
                    schema=(version.get("schema") or {}).get("openAPIV3Schema")
                    or {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    printer_columns=version.get("additionalPrinterColumns") or (),
                )
            )
        return served

    def stop_serving_crd(self, crd: Mapping[str, Any]) -> None:
        """A deleted CRD: its resources are no longer served and its objects are gone."""
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        for version in spec.get("versions") or []:
            resource = kmock.resource(spec.get("group"), version.get("name"), plural)
            if resource in self.store.types:
                for obj in self.store.list_raw(resource):
                    metadata = obj["metadata"]
                    self.store.delete(resource, metadata.get("namespace"), metadata["name"])
                del self.store.types[resource]
                self._resources.pop(resource, None)

    # -- HTTP entry point ------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            request = await self._parse(raw_request)
        except ApiError as error:
            return self._error_response(error)
        self._requests.append(request)
        if len(self._requests) > self.requests_kept:
            del self._requests[: len(self._requests) - self.requests_kept // 2]
        try:
            return await self._handle(request)
        except ApiError as error:
            return self._error_response(error)
        except kmock.KubernetesError as error:
            return await self._render_error(error)
        except rendering.StreamingError as error:
            raw_response = error.args[0]
            await self._stream_error(error.__cause__ or error, raw_response)
            await raw_response.write_eof()
            return raw_response
        except Exception as error:
            logger.exception("the local API server failed on %s %s", request.method, request.url)
            return self._error_response(ApiError(500, f"{type(error).__name__}: {error}"))

    async def _parse(self, raw_request: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw_request.read()
        text = body.decode("utf-8", errors="replace")
        data: Any = None
        if body.strip():
            if "protobuf" in raw_request.content_type:
                raise ApiError(
                    415,
                    "this local API server speaks JSON and YAML, not protobuf "
                    "(typed `kubectl create <kind>` sends protobuf: use `kubectl apply -f`)",
                )
            try:
                if "yaml" in raw_request.content_type:
                    data = yaml.safe_load(text)
                else:
                    data = json.loads(text)
            except (ValueError, yaml.YAMLError) as error:
                raise ApiError(400, f"the request body is not valid: {error}") from error
        path = parse_api_path(raw_request.path)
        params = dict(raw_request.query)
        resource = None
        if path is not None:
            resource = kmock.resource(group=path.group, version=path.version, plural=path.plural)
        watching = params.get("watch", "").lower() in ("true", "1")
        action = None
        if path is not None and path.plural:
            verb = call_verb(raw_request.method, path.name, watching)
            action = {
                "watch": kmock.action.WATCH,
                "list": kmock.action.LIST,
                "get": kmock.action.FETCH,
                "create": kmock.action.CREATE,
                "update": kmock.action.UPDATE,
                "patch": kmock.action.UPDATE,
                "delete": kmock.action.DELETE,
                "deletecollection": kmock.action.DELETE,
            }.get(verb)
        return rendering.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=params,
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=text,
            data=data,
            action=action,
            resource=resource,
            namespace=path.namespace if path else None,
            name=path.name if path else None,
            subresource=path.subresource if path else None,
        )

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.url.path.startswith("/openapi/"):
            return self._serve_openapi(request.url.path)
        if request.resource is None or request.resource.plural is None:
            # Discovery and non-API paths: kmock's scaffold and any user reactions.
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        call = ApiCall(
            verb=call_verb(
                str(request.method.value), request.name, request.action == kmock.action.WATCH
            ),
            group=str(request.resource.group),
            version=str(request.resource.version),
            resource=str(request.resource.plural),
            namespace=request.namespace or "",
            subresource=request.subresource or "",
            user_agent=request.headers.get("User-Agent", ""),
        )
        self.calls.record(call)
        injected = self.faults.take(call)
        if injected is not None:
            raise injected
        return await self._serve(request, call)

    def _error_response(self, error: ApiError) -> aiohttp.web.Response:
        response = _json_response(error.to_status(), status=error.status)
        response.headers.update(error.headers)
        return response

    # -- object requests -------------------------------------------------------------------

    async def _serve(self, request: rendering.Request, call: ApiCall) -> aiohttp.web.StreamResponse:
        store = self.store
        resource_type = store.type_of(request.resource)
        params = request.params
        manager = params.get("fieldManager") or _manager_from_agent(call.user_agent)
        dry_run = params.get("dryRun") == "All"
        namespace = request.namespace if resource_type.namespaced else None
        name, subresource = request.name, request.subresource
        tables = self._table_request(request, resource_type)
        if call.verb == "watch":
            return await self._serve_watch(request, resource_type, tables)
        if call.verb == "list":
            listing = self._list(resource_type, namespace, params)
            if tables is not None:
                return _json_response(self._table(tables, listing["items"], listing["metadata"]))
            return _json_response(listing)
        if call.verb == "get":
            if subresource == "scale":
                return _json_response(store.get_scale(resource_type.resource, namespace, name))
            if subresource and subresource not in resource_type.subresources - {"scale"}:
                raise ApiError(404, "the server could not find the requested resource")
            obj = store.get_raw(resource_type.resource, namespace, name)
            if obj is None:
                raise ApiError(
                    404,
                    f'{resource_type.qualified_plural} "{name}" not found',
                    details={"name": name, "kind": resource_type.resource.plural},
                )
            if tables is not None and not subresource:
                return _json_response(self._table(tables, [obj], {}))
            return _json_response(obj)
        if call.verb in ("create", "update", "patch"):
            admission = Admission.from_param(params.get("fieldValidation"))
            written, status = self._write(
                request, call, resource_type, namespace, manager, dry_run, admission
            )
            if resource_type.resource == CRDS and not dry_run:
                self.serve_crd(written)
            return _json_response(written, status=status, warnings=admission.warnings)
        if call.verb == "delete":
            options = request.data if isinstance(request.data, Mapping) else {}
            deleted = store.delete(
                resource_type.resource,
                namespace,
                name,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            if resource_type.resource == CRDS and not dry_run:
                self.stop_serving_crd(deleted)
            return _json_response(deleted)
        if call.verb == "deletecollection":
            listing = self._list(resource_type, namespace, params)
            for obj in listing["items"]:
                metadata = obj["metadata"]
                store.delete(resource_type.resource, metadata.get("namespace"), metadata["name"])
            return _json_response(listing)
        raise ApiError(405, f"{request.method} is not supported here")

    def _write(
        self,
        request: rendering.Request,
        call: ApiCall,
        resource_type: ResourceType,
        namespace: str | None,
        manager: str,
        dry_run: bool,
        admission: Admission,
    ) -> tuple[dict[str, Any], int]:
        """Create, update or patch; the object written and the HTTP status."""
        store = self.store
        name, subresource = request.name, request.subresource
        params = request.params
        if call.verb == "create":
            if name is not None:
                raise ApiError(405, "POST is for collections; use PUT or PATCH on a named object")
            if resource_type.resource == kmock.resource(CORE_EVENTS):
                if not isinstance(request.data, Mapping):
                    raise ApiError(400, "the request body must be a JSON or YAML object")
                event, created = record_event(
                    store,
                    namespace,
                    request.data,
                    manager=manager,
                    admission=admission,
                    dry_run=dry_run,
                )
                return event, 201 if created else 200
            created_obj = store.create(
                resource_type.resource,
                request.data,
                namespace=namespace,
                manager=manager,
                dry_run=dry_run,
                admission=admission,
            )
            return created_obj, 201
        existed = store.get_raw(resource_type.resource, namespace, name) is not None
        if not existed and not dry_run and subresource is None:
            # The API server authorizes an update or apply that creates its object as a
            # `create` as well: a client doing so needs both verbs.
            self.calls.record(dataclasses.replace(call, verb="create"))
        if call.verb == "update":
            updated = store.replace(
                resource_type.resource,
                namespace,
                name,
                request.data,
                subresource=subresource,
                manager=manager,
                dry_run=dry_run,
                admission=admission,
            )
            return updated, 200 if existed else 201
        content_type = request._raw_request.content_type if request._raw_request else ""
        patch_type = _PATCH_TYPES.get(content_type)
        if patch_type is None:
            raise ApiError(415, f"the patch content type {content_type!r} is not supported")
        patched = store.patch(
            resource_type.resource,
            namespace,
            name,
            request.data,
            patch_type=patch_type,
            subresource=subresource,
            manager=manager,
            force=params.get("force", "").lower() == "true",
            dry_run=dry_run,
            admission=admission,
        )
        return patched, 200 if existed else 201

    # -- tables and OpenAPI ----------------------------------------------------------------

    def _table_request(
        self, request: rendering.Request, resource_type: ResourceType
    ) -> TableRequest | None:
        version = wants_table(request.headers.get("Accept", ""))
        if version is None:
            return None
        printer = printer_for(
            resource_type.kind, resource_type.custom, resource_type.printer_columns
        )
        include = request.params.get("includeObject") or "Metadata"
        return TableRequest(version, include, printer)

    def _table(
        self,
        tables: TableRequest,
        objects: Iterable[Mapping[str, Any]],
        list_metadata: Mapping[str, Any],
        *,
        headers: bool = True,
    ) -> dict[str, Any]:
        return table(
            tables.printer,
            objects,
            table_version=tables.version,
            include_object=tables.include_object,
            headers=headers,
            list_metadata=list_metadata,
        )

    def _serve_openapi(self, path: str) -> aiohttp.web.Response:
        if path.rstrip("/") == "/openapi/v2":
            return _json_response(self.openapi.v2())
        if path.rstrip("/") == "/openapi/v3":
            return _json_response(self.openapi.v3_index())
        document = self.openapi.v3(path.removeprefix("/openapi/v3/"))
        if document is None:
            return self._error_response(
                ApiError(404, "the server could not find the requested resource")
            )
        return _json_response(document)

    def _predicate(self, params: Mapping[str, str], name: str | None = None) -> Predicate:
        fields = params.get("fieldSelector") or ""
        if name:
            fields = ",".join(part for part in (fields, f"metadata.name={name}") if part)
        try:
            return object_selector(params.get("labelSelector"), fields)
        except SelectorError as error:
            raise ApiError(400, str(error)) from error

    def _list(
        self, resource_type: ResourceType, namespace: str | None, params: Mapping[str, str]
    ) -> dict[str, Any]:
        items = self.store.list_raw(resource_type.resource, namespace, self._predicate(params))
        if params.get("continue"):
            after = _decode_continue(params["continue"])
            items = [
                item
                for item in items
                if (item["metadata"].get("namespace") or "", item["metadata"]["name"]) > after
            ]
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.revision)}
        limit = int(params.get("limit") or 0)
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            metadata["continue"] = _encode_continue(last.get("namespace") or "", last["name"])
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "kind": f"{resource_type.kind}List",
            "apiVersion": resource_type.api_version,
            "metadata": metadata,
            "items": items,
        }

    async def _serve_watch(
        self,
        request: rendering.Request,
        resource_type: ResourceType,
        tables: TableRequest | None = None,
    ) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        params = request.params
        predicate = self._predicate(params, request.name)
        namespace = request.namespace if resource_type.namespaced else None
        since_text = params.get("resourceVersion") or ""
        initial_events = params.get("sendInitialEvents", "").lower() == "true"
        bookmarks = params.get("allowWatchBookmarks", "").lower() == "true"
        timeout = min(
            float(params.get("timeoutSeconds") or self.watch_timeout_max), self.watch_timeout_max
        )
        store = self.store
        subscription = store.subscribe(resource_type.resource, namespace)
        response = aiohttp.web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
        )
        headers_sent = False

        async def send(kind: str, obj: dict[str, Any]) -> None:
            # As Tables, the column definitions come with the first event only.
            nonlocal headers_sent
            if tables is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                version = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                obj = self._table(tables, [obj], version, headers=not headers_sent)
                headers_sent = True
            await self._write_event(response, kind, obj)

        try:
            backlog: list[tuple[str, dict[str, Any]]] = []
            if initial_events or since_text in ("", "0"):
                backlog = [
                    ("ADDED", obj)
                    for obj in store.list_raw(resource_type.resource, namespace, predicate)
                ]
                last = store.revision
            else:
                try:
                    last = int(since_text)
                except ValueError as error:
                    raise ApiError(400, f"invalid resourceVersion {since_text!r}") from error
                try:
                    for event in store.events_since(resource_type.resource, last):
                        if subscription.wants(event) and (kind := _watch_type(event, predicate)):
                            backlog.append((kind, event.object))
                        last = event.revision
                except Expired as error:
                    gone = ApiError(410, str(error), reason="Expired")
                    backlog = [("ERROR", gone.to_status())]
            await response.prepare(request._raw_request)
            for kind, obj in backlog:
                await send(kind, obj)
            if backlog and backlog[-1][0] == "ERROR":
                return response
            if initial_events:
                await self._write_bookmark(response, resource_type, last, initial_end=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = loop.time() + self.bookmark_seconds
            while (remaining := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(
                        subscription.queue.get(), timeout=min(remaining, 1.0)
                    )
                except TimeoutError:
                    transport = request._raw_request.transport
                    if transport is None or transport.is_closing():
                        break
                    if bookmarks and loop.time() >= next_bookmark:
                        next_bookmark = loop.time() + self.bookmark_seconds
                        await self._write_bookmark(response, resource_type, store.revision)
                    continue
                if event is None:
                    break
                if event.revision <= last:
                    continue
                last = event.revision
                if kind := _watch_type(event, predicate):
                    await send(kind, event.object)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client went away; nothing to tell it
        finally:
            store.unsubscribe(subscription)
        return response

    async def _write_event(self, response: aiohttp.web.StreamResponse, kind: str, obj: Any) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    async def _write_bookmark(
        self,
        response: aiohttp.web.StreamResponse,
        resource_type: ResourceType,
        revision: int,
        *,
        initial_end: bool = False,
    ) -> None:
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if initial_end:
            metadata["annotations"] = {_INITIAL_EVENTS_END: "true"}
        bookmark = {
            "kind": resource_type.kind,
            "apiVersion": resource_type.api_version,
            "metadata": metadata,
        }
        await self._write_event(response, "BOOKMARK", bookmark)

    # -- discovery -------------------------------------------------------------------------

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return {
            "major": "1",
            "minor": "35",
            "gitVersion": "v1.35.0-modelfleet-local",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.25",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        entries: list[dict[str, Any]] = []
        for resource_type in self.store.types.values():
            res = resource_type.resource
            if (res.group, res.version) != (group, version):
                continue
            info = self._resources[res]
            entry: dict[str, Any] = {
                "name": res.plural,
                "singularName": info.singular or resource_type.kind.lower(),
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": sorted(info.verbs),
            }
            if info.shortnames:
                entry["shortNames"] = sorted(info.shortnames)
            if info.categories:
                entry["categories"] = sorted(info.categories)
            entries.append(entry)
            for subresource in sorted(resource_type.subresources):
                sub_entry = {
                    "name": f"{res.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": resource_type.namespaced,
                    "kind": resource_type.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if subresource == "scale":
                    sub_entry.update(group="autoscaling", version="v1", kind="Scale")
                entries.append(sub_entry)
        if not entries and group != "":
            raise kmock.KubernetesResourceNotFoundError()
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else str(version),
            "resources": entries,
        }

    def close(self) -> None:
        """End open watches so the server can stop without waiting for them."""
        self.store.close()
