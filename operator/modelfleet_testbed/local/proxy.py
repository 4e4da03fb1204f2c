"""Services reachable in the local cluster: the node agent's small kube-proxy.

A Service's cluster IP is a loopback address (allocated by the store at create, see
`cluster_ips`). For each TCP port of a Service with one, the proxy listens on
(clusterIP, port) and sends each accepted connection to the next ready Pod the Service
selects (round-robin per connection) at the Pod's real local port, the
`modelfleet.io/local-port` annotation. Endpoints are resolved from the store when a
connection arrives, so they are never staler than the Pods' own status. Bytes are pumped
both ways and an end-of-stream is passed on as a half-close, so streamed responses,
keep-alive and request-then-shutdown clients all work. With no ready Pod the connection
is reset at once, as kube-proxy's REJECT rule answers.

The proxy also keeps an `Endpoints` object per selecting Service (owned by the Service, so
the garbage collector removes it with it), when the cluster serves `v1/endpoints`. Its
ports are the Pods' real local ports, one subset per Pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import kmock
import structlog

from modelfleet_testbed.local.cluster_ips import HEADLESS, tcp_ports
from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.store import ObjectStore, StoredEvent

log = structlog.get_logger(__name__)

SERVICES = kmock.resource("v1/services")
PODS = kmock.resource("v1/pods")
ENDPOINTS = kmock.resource("v1/endpoints")
PORT_ANNOTATION = "modelfleet.io/local-port"  # where the node agent runs the pod's server
MANAGER = "endpoint-controller"
_CHUNK = 64 * 1024
_BACKLOG = 128
_ACCEPT_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class Endpoint:
    pod: str
    host: str
    port: int


def _selects(selector: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_serves(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> bool:
    """A numeric targetPort is served by any Pod; a named one only by a Pod with a container
    port of that name (as the endpoints controller resolves it)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if not isinstance(target, str) or target.isdigit():
        return True
    protocol = service_port.get("protocol", "TCP")
    return any(
        port.get("name") == target and port.get("protocol", "TCP") == protocol
        for container in (pod.get("spec") or {}).get("containers") or []
        for port in container.get("ports") or []
    )


def local_endpoint(pod: Mapping[str, Any]) -> Endpoint | None:
    """Where the Pod's server really listens; None for a Pod the node agent does not run."""
    local_port = (pod["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
    host = (pod.get("status") or {}).get("podIP")
    if not host or not str(local_port or "").isdigit():
        return None
    return Endpoint(pod["metadata"]["name"], host, int(local_port))


def service_port_entry(service: Mapping[str, Any], port: int) -> dict[str, Any] | None:
    for entry in (service.get("spec") or {}).get("ports") or []:
        if entry.get("port") == port and entry.get("protocol", "TCP") == "TCP":
            return entry
    return None


def cluster_ip_of(service: Mapping[str, Any] | None) -> str | None:
    """The address to listen on; None for headless, ExternalName or not yet allocated."""
    address = ((service or {}).get("spec") or {}).get("clusterIP")
    return address if address and address != HEADLESS else None


@dataclass(eq=False)
class _Listener:
    sock: socket.socket
    paused: asyncio.TimerHandle | None = None  # accepting again after an error, at this time


@dataclass(eq=False)
class _Frontend:
    """One Service as the proxy serves it: listeners on its cluster IP and their connections."""

    namespace: str
    name: str
    uid: str
    address: str
    listeners: dict[int, _Listener] = field(default_factory=dict)
    connections: dict[asyncio.Task[None], int] = field(default_factory=dict)
    turns: Counter[int] = field(default_factory=Counter)


class ServiceProxy:
    def __init__(
        self, store: ObjectStore, *, connect_timeout: float = 2.0, retry_seconds: float = 1.0
    ):
        self.store = store
        self.connect_timeout = connect_timeout
        self.retry_seconds = retry_seconds
        self._frontends: dict[tuple[str, str], _Frontend] = {}
        self._unbound: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        try:
            store.type_of(ENDPOINTS)
            self._keeps_endpoints = True
        except ApiError:
            self._keeps_endpoints = False

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="service-proxy")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        frontends = list(self._frontends.values())
        self._frontends.clear()
        await asyncio.gather(*(self._close(frontend) for frontend in frontends))

    def listening(self, namespace: str, name: str) -> list[tuple[str, int]]:
        """The (address, port) pairs the proxy listens on for a Service."""
        frontend = self._frontends.get((namespace, name))
        if frontend is None:
            return []
        return [(frontend.address, port) for port in sorted(frontend.listeners)]

    def ready_endpoints(self, namespace: str, name: str, port: int) -> list[Endpoint]:
        """The ready Pods behind a Service port right now, in a stable order."""
        service = self.store.get_raw(SERVICES, namespace, name)
        entry = service_port_entry(service, port) if service else None
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if entry is None or not selector:
            return []
        found = []
        for pod in self.store.list_raw(PODS, namespace, lambda p: _selects(selector, p)):
            endpoint = local_endpoint(pod)
            if endpoint is not None and pod_is_ready(pod) and pod_serves(pod, entry):
                found.append(endpoint)
        return found

    # -- following Services and Pods -------------------------------------------------------

    async def _run(self) -> None:
        subscription = self.store.subscribe(None)
        try:
            services = {
                (s["metadata"]["namespace"], s["metadata"]["name"])
                for s in self.store.list_raw(SERVICES)
            }
            changed, namespaces = services, {namespace for namespace, _ in services}
            while True:
                for key in sorted(changed | self._unbound):
                    try:
                        await self._sync_listeners(key)
                    except Exception:
                        log.exception("service proxy sync failed", namespace=key[0], name=key[1])
                for namespace in sorted(namespaces):
                    try:
                        self._write_endpoints(namespace)
                    except Exception:
                        log.exception("endpoints update failed", namespace=namespace)
                changed, namespaces = set(), set()
                timeout = self.retry_seconds if self._unbound else None
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), timeout)
                except TimeoutError:
                    continue
                while event is not None:
                    self._note(event, changed, namespaces)
                    try:
                        event = subscription.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                if event is None:
                    return  # the store closed
        finally:
            self.store.unsubscribe(subscription)

    def _note(
        self, event: StoredEvent, changed: set[tuple[str, str]], namespaces: set[str]
    ) -> None:
        metadata = event.object["metadata"]
        if event.resource == SERVICES:
            changed.add((metadata["namespace"], metadata["name"]))
            namespaces.add(metadata["namespace"])
        elif event.resource == PODS:
            namespaces.add(metadata["namespace"])

    async def _sync_listeners(self, key: tuple[str, str]) -> None:
        service = self.store.get_raw(SERVICES, *key)
        address = cluster_ip_of(service)
        wanted = set(tcp_ports(service["spec"])) if service and address else set()
        frontend = self._frontends.get(key)
        if frontend is not None and (
            not wanted
            or frontend.address != address
            or frontend.uid != (service or {}).get("metadata", {}).get("uid")
        ):
            del self._frontends[key]
            await self._close(frontend)
            frontend = None
        self._unbound.discard(key)
        if not wanted:
            return
        assert service is not None and address is not None
        if frontend is None:
            frontend = _Frontend(*key, uid=service["metadata"]["uid"], address=address)
            self._frontends[key] = frontend
        for port in sorted(set(frontend.listeners) - wanted):
            await self._stop_listening(frontend, port)
        for port in sorted(wanted - set(frontend.listeners)):
            try:
                sock = _listening_socket(address, port)
            except OSError as error:
                # Another process may hold the address for a moment; try again shortly.
                log.warning(
                    "service port not bound, retrying",
                    namespace=key[0],
                    service=key[1],
                    address=address,
                    port=port,
                    error=str(error),
                )
                self._unbound.add(key)
                continue
            listener = _Listener(sock)
            frontend.listeners[port] = listener
            self._start_accepting(frontend, port, listener)
            log.info(
                "service proxied", namespace=key[0], service=key[1], address=address, port=port
            )

    async def _stop_listening(self, frontend: _Frontend, port: int) -> None:
        listener = frontend.listeners.pop(port)
        asyncio.get_running_loop().remove_reader(listener.sock)
        if listener.paused is not None:
            listener.paused.cancel()
        listener.sock.close()
        doomed = [task for task, on_port in frontend.connections.items() if on_port == port]
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)

    async def _close(self, frontend: _Frontend) -> None:
        await asyncio.gather(*(self._stop_listening(frontend, p) for p in list(frontend.listeners)))
        remaining = list(frontend.connections)
        for task in remaining:
            task.cancel()
        await asyncio.gather(*remaining, return_exceptions=True)
        log.info("service unproxied", namespace=frontend.namespace, service=frontend.name)

    # -- connections -----------------------------------------------------------------------

    # Accepting in a reader callback, not awaiting `sock_accept`: a connection accepted just
    # as the listener closes would be lost in a cancelled await, its socket never closed.
    def _start_accepting(self, frontend: _Frontend, port: int, listener: _Listener) -> None:
        listener.paused = None
        asyncio.get_running_loop().add_reader(listener.sock, self._accept, frontend, port, listener)

    def _accept(self, frontend: _Frontend, port: int, listener: _Listener) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_BACKLOG):
            try:
                client, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors, say: pause, do not spin
                log.warning("accept failed", address=frontend.address, port=port, error=str(error))
                loop.remove_reader(listener.sock)
                listener.paused = loop.call_later(
                    _ACCEPT_RETRY_SECONDS, self._start_accepting, frontend, port, listener
                )
                return
            client.setblocking(False)
            task = loop.create_task(self._serve(frontend, port, client))
            frontend.connections[task] = port
            task.add_done_callback(functools.partial(_forget, frontend, client))

    async def _serve(self, frontend: _Frontend, port: int, client: socket.socket) -> None:
        upstream = None
        try:
            upstream = await self._connect_upstream(frontend, port)
            if upstream is None:
                _reset(client)
                return
            client_streams = await asyncio.open_connection(sock=client)
        except BaseException:
            client.close()
            if upstream is not None:
                upstream[1].transport.abort()
            raise
        writers = (client_streams[1], upstream[1])
        finished = False
        try:
            await asyncio.gather(
                _pump(client_streams[0], upstream[1], writers),
                _pump(upstream[0], client_streams[1], writers),
            )
            finished = True
        finally:
            for writer in writers:
                if finished:
                    writer.close()  # after what is still buffered has been sent
                else:
                    writer.transport.abort()

    async def _connect_upstream(
        self, frontend: _Frontend, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        endpoints = self.ready_endpoints(frontend.namespace, frontend.name, port)
        first = frontend.turns[port]
        frontend.turns[port] += 1
        for offset in range(len(endpoints)):
            endpoint = endpoints[(first + offset) % len(endpoints)]
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(endpoint.host, endpoint.port), self.connect_timeout
                )
            except (OSError, TimeoutError) as error:
                log.warning(
                    "endpoint unreachable",
                    namespace=frontend.namespace,
                    service=frontend.name,
                    pod=endpoint.pod,
                    error=str(error) or type(error).__name__,
                )
        return None

    # -- Endpoints objects -----------------------------------------------------------------

    def _write_endpoints(self, namespace: str) -> None:
        if not self._keeps_endpoints:
            return
        pods = self.store.list_raw(PODS, namespace)
        for service in self.store.list_raw(SERVICES, namespace):
            selector = (service.get("spec") or {}).get("selector") or {}
            if not selector:
                continue  # a Service without a selector has hand-written Endpoints
            selected = [pod for pod in pods if _selects(selector, pod)]
            with contextlib.suppress(ApiError):  # e.g. the namespace is terminating
                self.store.replace(
                    ENDPOINTS,
                    namespace,
                    service["metadata"]["name"],
                    endpoints_object(service, selected),
                    manager=MANAGER,
                )


def endpoints_object(service: Mapping[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    metadata = service["metadata"]
    subsets = []
    for pod in pods:
        endpoint = local_endpoint(pod)
        if endpoint is None:
            continue
        ports = [
            {
                **({"name": entry["name"]} if entry.get("name") else {}),
                "port": endpoint.port,
                "protocol": entry.get("protocol", "TCP"),
            }
            for entry in (service.get("spec") or {}).get("ports") or []
            if pod_serves(pod, entry)
        ]
        if not ports:
            continue
        address = {
            "ip": endpoint.host,
            "targetRef": {
                "kind": "Pod",
                "namespace": pod["metadata"]["namespace"],
                "name": endpoint.pod,
                "uid": pod["metadata"]["uid"],
            },
        }
        readiness = "addresses" if pod_is_ready(pod) else "notReadyAddresses"
        subsets.append({readiness: [address], "ports": ports})
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }
    if metadata.get("labels"):
        body["metadata"]["labels"] = dict(metadata["labels"])
    if subsets:
        body["subsets"] = subsets
    return body


def _forget(frontend: _Frontend, client: socket.socket, task: asyncio.Task[None]) -> None:
    frontend.connections.pop(task, None)
    if task.cancelled():
        # Cancelled before it ran, the task never took charge of the socket. (Otherwise the
        # socket's transport is already aborted, and closing twice is harmless.)
        client.close()


def _listening_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _reset(client: socket.socket) -> None:
    """Close with a TCP reset, so the client fails at once instead of reading an empty reply."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


async def _pump(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
) -> None:
    """Copy until end-of-stream, then half-close the sink; an error tears down both sides."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        for writer in both:
            writer.transport.abort()
