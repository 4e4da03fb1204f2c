"""Services in the local cluster: each gets a loopback cluster IP at create, and the node
agent's proxy forwards connections to it to the ready pods it selects.

Replicas here are tiny servers: an aiohttp app (`/whoami`, a server-sent-event `/stream`)
and a raw TCP echo that answers only after the client half-closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import aiohttp.web
import pytest

from modelfleet_testbed.local.agent import NodeAgent, ServesOnItsPort
from modelfleet_testbed.local.cluster import LocalCluster
from modelfleet_testbed.local.errors import ApiError

pytestmark = pytest.mark.e2e

DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
ENDPOINTS = "v1/endpoints"
PORT = 8000


class HttpReplica(ServesOnItsPort):
    def __init__(self, pod_name: str, release: asyncio.Event):
        self.pod_name = pod_name
        self.release = release
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/whoami", self._whoami)
        app.router.add_get("/stream", self._stream)
        self._runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok")

    async def _whoami(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=self.pod_name)

    async def _stream(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await self.release.wait()  # the second event only once the client has the first
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class EchoReplica(ServesOnItsPort):
    """Answers its readiness probe; otherwise reads to end-of-stream, then echoes.
    Stopping it closes the listener only (connections end on their own)."""

    def __init__(self, pod_name: str):
        self.pod_name = pod_name
        self.host = "127.0.0.1"
        self.port = 0
        self.waiting = 0  # connections read from, not yet half-closed by the client
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(65536)
            if first.startswith(b"GET /health"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                self.waiting += 1
                try:
                    rest = await asyncio.wait_for(reader.read(), 5)  # until the half-close
                finally:
                    self.waiting -= 1
                writer.write(f"{self.pod_name}:".encode() + first + rest)
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class Launcher:
    def __init__(self) -> None:
        self.running: dict[str, HttpReplica | EchoReplica] = {}
        self.release = asyncio.Event()

    async def launch(self, pod_name: str, deployment: dict, startup_seconds: float) -> Any:
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        replica = EchoReplica(pod_name) if image == "echo" else HttpReplica(pod_name, self.release)
        await replica.start()
        self.running[pod_name] = replica
        original_stop = replica.stop

        async def stop() -> None:
            await original_stop()
            self.running.pop(pod_name, None)

        replica.stop = stop  # type: ignore[method-assign]
        return replica


def deployment(name: str, replicas: int, image: str = "http") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


def service(name: str, app: str, **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            **spec,
        },
    }


async def eventually(check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def fate_of_connection(address: str, port: int = PORT) -> str:
    """ "refused" (nothing listens), "reset" (accepted, then closed unanswered) or "served"."""
    try:
        reader, writer = await asyncio.open_connection(address, port)
    except ConnectionRefusedError:
        return "refused"
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        writer.close()
    return "served" if answer.startswith(b"HTTP/1.1 200") else "reset"


async def eventually_fate(expected: str, address: str, port: int = PORT) -> None:
    deadline = time.monotonic() + 5.0
    while (fate := await fate_of_connection(address, port)) != expected:
        assert time.monotonic() < deadline, f"{address}:{port} still {fate}, not {expected}"
        await asyncio.sleep(0.02)


@pytest.fixture
def launcher() -> Launcher:
    return Launcher()


@pytest.fixture
async def agent(cluster: LocalCluster, launcher: Launcher) -> AsyncIterator[NodeAgent]:
    async with NodeAgent(cluster.store, launcher, probe_interval=0.05) as node_agent:
        yield node_agent
    assert launcher.running == {}, "the agent left replicas running"


async def ready_pods(agent: NodeAgent, name: str, count: int, port: int = PORT) -> list[str]:
    """The ready pods behind a Service, once there are `count` of them."""
    endpoints = await eventually(
        lambda: len(found := agent.proxy.ready_endpoints("llm", name, port)) == count and found,
        f"{count} ready pods behind {name}",
    )
    return [endpoint.pod for endpoint in endpoints]


async def test_a_service_gets_a_loopback_ip_and_spreads_connections_over_ready_pods(
    cluster: LocalCluster, agent: NodeAgent, launcher: Launcher
) -> None:
    store = cluster.store
    web = store.create(DEPLOYMENTS, deployment("web", 2), namespace="llm")
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": web["metadata"]["uid"],
    }
    applied = service("web", "web")
    applied["metadata"]["ownerReferences"] = [owner]
    # Created by server-side apply, as the operator does.
    created = store.patch(
        SERVICES, "llm", "web", applied, patch_type="apply", manager="modelfleet", force=True
    )
    address = created["spec"]["clusterIP"]
    assert created["spec"]["clusterIPs"] == [address]
    assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/24")
    assert 2 <= int(address.rsplit(".", 1)[1]) <= 254
    other = store.create(SERVICES, service("other", "nothing"), namespace="llm")
    assert other["spec"]["clusterIP"] not in (address, "127.0.0.1")
    headless = store.create(SERVICES, service("peers", "web", clusterIP="None"), namespace="llm")
    assert headless["spec"]["clusterIPs"] == ["None"]

    # The API server's rules: kept across writes that leave it out, never changed.
    reapplied = store.patch(
        SERVICES, "llm", "web", applied, patch_type="apply", manager="modelfleet", force=True
    )
    assert reapplied["spec"]["clusterIP"] == address
    with pytest.raises(ApiError, match="may not change once set") as changed:
        store.patch(
            SERVICES, "llm", "web", {"spec": {"clusterIP": "127.0.0.99"}}, patch_type="merge"
        )
    assert changed.value.status == 422
    with pytest.raises(ApiError, match="already allocated"):
        store.create(SERVICES, service("copy", "web", clusterIP=address), namespace="llm")

    pods = await ready_pods(agent, "web", 2)
    await eventually(lambda: agent.proxy.listening("llm", "web") == [(address, PORT)], "listener")
    assert agent.proxy.listening("llm", "peers") == [], "a headless Service is not proxied"

    url = f"http://{address}:{PORT}/whoami"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        answers = Counter([await (await fresh.get(url)).text() for _ in range(6)])
    assert answers == {pods[0]: 3, pods[1]: 3}, "round-robin per connection"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as kept:
        answers = Counter([await (await kept.get(url)).text() for _ in range(4)])
    assert len(answers) == 1, "a kept-alive connection stays with its pod"

    endpoints = store.get(ENDPOINTS, "llm", "web")
    shown = {
        subset["addresses"][0]["targetRef"]["name"]: subset["ports"]
        for subset in endpoints["subsets"]
    }
    assert shown == {
        pod: [{"name": "http", "port": launcher.running[pod].port, "protocol": "TCP"}]
        for pod in pods
    }

    store.delete(DEPLOYMENTS, "llm", "web")  # the Service and its Endpoints go with it
    await eventually_fate("refused", address)
    await eventually(lambda: store.get(ENDPOINTS, "llm", "web") is None, "Endpoints collected")
    assert agent.proxy.listening("llm", "web") == []


async def test_streamed_responses_and_half_closes_pass_through(
    cluster: LocalCluster, agent: NodeAgent, launcher: Launcher
) -> None:
    store = cluster.store
    store.create(DEPLOYMENTS, deployment("web", 1), namespace="llm")
    store.create(DEPLOYMENTS, deployment("echo", 1, image="echo"), namespace="llm")
    web = store.create(SERVICES, service("web", "web"), namespace="llm")["spec"]["clusterIP"]
    echo = store.create(SERVICES, service("echo", "echo"), namespace="llm")["spec"]["clusterIP"]
    await ready_pods(agent, "web", 1)
    (echo_pod,) = await ready_pods(agent, "echo", 1)

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{web}:{PORT}/stream") as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        assert first == b"data: first\n\n", "the first event arrives while the stream is open"
        launcher.release.set()
        assert await asyncio.wait_for(response.content.read(), 5) == b"data: second\n\n"

    await eventually_fate("served", echo)
    reader, writer = await asyncio.open_connection(echo, PORT)
    writer.write(b"hello")
    writer.write_eof()  # the echo answers only after it sees this end-of-stream
    assert await asyncio.wait_for(reader.read(), 5) == f"{echo_pod}:hello".encode()
    writer.close()


async def test_the_proxy_follows_scaling_service_changes_and_deletion(
    cluster: LocalCluster, agent: NodeAgent
) -> None:
    store = cluster.store
    store.create(DEPLOYMENTS, deployment("web", 1), namespace="llm")
    store.create(DEPLOYMENTS, deployment("echo", 1, image="echo"), namespace="llm")
    address = store.create(SERVICES, service("web", "web"), namespace="llm")["spec"]["clusterIP"]
    await ready_pods(agent, "web", 1)
    await eventually_fate("served", address)

    store.patch(DEPLOYMENTS, "llm", "web", {"spec": {"replicas": 0}}, patch_type="merge")
    await eventually(lambda: not store.list("v1/pods", "llm", _app("web")), "web scaled to zero")
    assert await fate_of_connection(address) == "reset", "no ready pod: closed at once"
    assert "subsets" not in store.get(ENDPOINTS, "llm", "web")

    # A new port and another selector: the old port closes, the new one reaches the echo.
    ports = [{"name": "http", "port": PORT + 1, "targetPort": "http"}]
    store.patch(
        SERVICES,
        "llm",
        "web",
        {"spec": {"selector": {"app": "echo"}, "ports": ports}},
        patch_type="merge",
    )
    await eventually_fate("served", address, PORT + 1)
    assert await fate_of_connection(address, PORT) == "refused"
    assert store.get(SERVICES, "llm", "web")["spec"]["clusterIP"] == address

    store.delete(SERVICES, "llm", "web")
    await eventually_fate("refused", address, PORT + 1)
    assert agent.proxy.listening("llm", "web") == []
    again = store.create(SERVICES, service("web", "echo"), namespace="llm")["spec"]["clusterIP"]
    assert again != address, "a freed address is not handed out again at once"


async def test_agent_shutdown_closes_listeners_and_open_connections(
    cluster: LocalCluster, launcher: Launcher
) -> None:
    store = cluster.store
    async with NodeAgent(store, launcher, probe_interval=0.05) as agent:
        store.create(DEPLOYMENTS, deployment("echo", 1, image="echo"), namespace="llm")
        created = store.create(SERVICES, service("echo", "echo"), namespace="llm")
        address = created["spec"]["clusterIP"]
        (pod,) = await ready_pods(agent, "echo", 1)
        reader, writer = await asyncio.open_connection(address, PORT)
        writer.write(b"hello")  # no end-of-stream: the echo holds the connection open
        echo = launcher.running[pod]
        await eventually(lambda: echo.waiting, "the connection to reach the pod")
        started = time.monotonic()
    try:
        assert time.monotonic() - started < 2.0, "shutdown does not wait for open connections"
        # The echo replica leaves open connections be when it stops: the proxy closed this one.
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 1) == b""
        assert await fate_of_connection(address) == "refused"
        assert launcher.running == {}
    finally:
        writer.close()


async def test_allocation_skips_an_address_another_process_listens_on(
    cluster: LocalCluster,
) -> None:
    first = "127.0.0.2"  # where a fresh cluster starts
    with socket.socket() as occupant:
        occupant.bind((first, 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        ports = [{"name": "http", "port": port, "targetPort": "http"}]
        created = cluster.store.create(
            SERVICES, service("web", "web", ports=ports), namespace="llm"
        )
    assert created["spec"]["clusterIP"] != first


def _app(name: str) -> Callable[[dict], bool]:
    return lambda obj: obj["metadata"].get("labels", {}).get("app") == name
