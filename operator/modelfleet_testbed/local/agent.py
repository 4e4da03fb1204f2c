"""The node agent: kubelet, Deployment controller and garbage collector of the local cluster.

- For each Deployment it keeps `spec.replicas` replicas of the current pod template
  running through a pluggable `Launcher` (the simulated vLLM replica in the demo), one
  Pod object per replica (`status.podIP` = the replica's host, its real port in the
  `modelfleet.io/local-port` annotation). Scale-down stops the newest replicas first;
  a template change rolls: old replicas stop as new ones become ready.
- A replica counts as ready once its start-up delay has passed and a GET of its
  readiness URL answers 2xx (the pod's readiness path on its port, unless its launcher
  knows better, e.g. a gateway pod's Envoy /ready); `status.readyReplicas` / `availableReplicas` /
  `updatedReplicas` / `observedGeneration` and the `Available` condition follow.
- Objects whose owners (by `ownerReferences` uid) are all gone are deleted (cascade).
- ConfigMaps and Secrets can be projected into directories like kubelet's volumes.
- Running replicas of pods annotated `prometheus.io/scrape: "true"` are written into a
  Prometheus file_sd target file (the address their launcher gives), labelled with
  namespace, pod, pool and variant, or gateway.
- Services are reachable at their cluster IP (a loopback address): `proxy.ServiceProxy`
  forwards each connection to a ready selected pod, and keeps the Endpoints objects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import itertools
import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
import structlog

from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.projection import project_files
from modelfleet_testbed.local.proxy import PORT_ANNOTATION, ServiceProxy
from modelfleet_testbed.local.store import ObjectStore, now_rfc3339

log = structlog.get_logger(__name__)

DEPLOYMENTS = "apps/v1/deployments"
PODS = "v1/pods"
STARTUP_ANNOTATION = "modelfleet.io/startup-seconds"
DEFAULT_TARGET_LABELS = {
    "pool": "modelfleet.io/pool",
    "variant": "modelfleet.io/variant",
    "gateway": "modelfleet.io/routing-policy",
}
MANAGER = "local-node-agent"
_STATUS_FIELDS = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "conditions",
)


class ReplicaHandle(Protocol):
    """One running Pod as its launcher started it."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int:
        """Where its Services' connections go."""
        ...

    def readiness_url(self, path: str) -> str | None:
        """What the readiness probe GETs (`path`: the pod's readiness path); None while
        there is nothing to probe yet (not ready)."""
        ...

    def metrics_target(self) -> str | None:
        """host:port Prometheus scrapes; None while unknown."""
        ...

    async def stop(self) -> None: ...


class ServesOnItsPort:
    """For handles whose one port also answers the readiness probe and the scrapes (a
    vLLM replica)."""

    host: str
    port: int

    def readiness_url(self, path: str) -> str | None:
        return f"http://{self.host}:{self.port}{path}"

    def metrics_target(self) -> str | None:
        return f"{self.host}:{self.port}"


class Launcher(Protocol):
    """Starts one replica of a Deployment; the replica itself takes `startup_seconds` to load."""

    async def launch(
        self, pod_name: str, deployment: dict[str, Any], startup_seconds: float
    ) -> ReplicaHandle: ...


def template_hash(template: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def startup_seconds_of(deployment: Mapping[str, Any], default: float) -> float:
    template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    for notes in (
        template_meta.get("annotations"),
        deployment["metadata"].get("annotations"),
    ):
        value = (notes or {}).get(STARTUP_ANNOTATION)
        if value is not None:
            return float(value)
    return default


def readiness_path_of(template: Mapping[str, Any]) -> str:
    for container in (template.get("spec") or {}).get("containers") or []:
        http_get = (container.get("readinessProbe") or {}).get("httpGet") or {}
        if http_get.get("path"):
            return str(http_get["path"])
    return "/health"


@dataclass(eq=False)
class Replica:
    namespace: str
    pod_name: str
    template_hash: str
    order: int
    handle: ReplicaHandle
    labels: dict[str, str]
    annotations: dict[str, str]
    ready: bool = False
    stopped: bool = False
    probe: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _DeploymentWorker:
    namespace: str
    name: str
    latest: dict[str, Any] | None = None
    replicas: list[Replica] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Projection:
    kind: str  # "configmaps" or "secrets"
    namespace: str
    name: str
    directory: Path


class NodeAgent:
    def __init__(
        self,
        store: ObjectStore,
        launcher: Launcher,
        *,
        default_startup_seconds: float = 0.0,
        startup_scale: float = 1.0,
        probe_interval: float = 0.2,
        failure_threshold: int = 3,
        file_sd_path: Path | None = None,
        target_labels: Mapping[str, str] = DEFAULT_TARGET_LABELS,
        node_name: str = "local-node",
    ):
        self.store = store
        self.launcher = launcher
        self.default_startup_seconds = default_startup_seconds
        # A demo running the operator's clock N times faster loads models N times faster.
        self.startup_scale = startup_scale
        self.probe_interval = probe_interval
        self.failure_threshold = failure_threshold
        self.file_sd_path = file_sd_path
        self.target_labels = dict(target_labels)
        self.node_name = node_name
        self._workers: dict[tuple[str, str], _DeploymentWorker] = {}
        self._replicas_by_pod: dict[tuple[str, str], tuple[_DeploymentWorker, Replica]] = {}
        self._projections: list[_Projection] = []
        self._order = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.proxy = ServiceProxy(store)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        self._write_targets()
        await self.proxy.__aenter__()
        self._tasks = [
            asyncio.create_task(self._watch_deployments(), name="agent-deployments"),
            asyncio.create_task(self._watch_pods(), name="agent-pods"),
            asyncio.create_task(self._collect_garbage(), name="agent-gc"),
            asyncio.create_task(self._watch_projected(), name="agent-projections"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.proxy.__aexit__(None, None, None)
        for task in self._tasks:
            task.cancel()
        workers = list(self._workers.values())
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(
            *self._tasks, *(w.task for w in workers if w.task), return_exceptions=True
        )
        for worker in workers:
            for replica in list(worker.replicas):
                await self._stop_replica(worker, replica, delete_pod=False)
        if self._session is not None:
            await self._session.close()

    # -- public ----------------------------------------------------------------------------

    def replicas(self, namespace: str, deployment: str) -> list[Replica]:
        worker = self._workers.get((namespace, deployment))
        return list(worker.replicas) if worker else []

    def project_configmap(self, namespace: str, name: str, directory: Path) -> bool:
        """Keep `directory` showing the ConfigMap's keys as files, swapped atomically on change.

        Returns whether the ConfigMap exists yet (the directory fills in when it appears)."""
        return self._project("configmaps", namespace, name, Path(directory))

    def project_secret(self, namespace: str, name: str, directory: Path) -> bool:
        """Like `project_configmap`, with the Secret's decoded data."""
        return self._project("secrets", namespace, name, Path(directory))

    # -- deployment controller -------------------------------------------------------------

    async def _watch_deployments(self) -> None:
        async for event_type, deployment in self.store.watch(DEPLOYMENTS):
            metadata = deployment["metadata"]
            key = (metadata["namespace"], metadata["name"])
            worker = self._workers.get(key)
            if event_type == "DELETED":
                if worker is not None:
                    worker.latest = None
                    worker.wake.set()
                continue
            if worker is None or (worker.task is not None and worker.task.done()):
                worker = _DeploymentWorker(*key)
                self._workers[key] = worker
                worker.task = asyncio.create_task(self._run_worker(worker), name=f"agent-{key}")
            worker.latest = deployment
            worker.wake.set()

    async def _run_worker(self, worker: _DeploymentWorker) -> None:
        while True:
            await worker.wake.wait()
            worker.wake.clear()
            deployment = worker.latest
            if deployment is None:
                for replica in list(worker.replicas):
                    await self._stop_replica(worker, replica, delete_pod=True)
                if self._workers.get((worker.namespace, worker.name)) is worker:
                    del self._workers[(worker.namespace, worker.name)]
                return
            try:
                await self._reconcile(worker, deployment)
            except Exception:
                log.exception(
                    "deployment reconcile failed", namespace=worker.namespace, name=worker.name
                )
                await asyncio.sleep(0.5)
                worker.wake.set()

    async def _reconcile(self, worker: _DeploymentWorker, deployment: dict[str, Any]) -> None:
        spec = deployment.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        current = template_hash(spec.get("template") or {})
        new = [r for r in worker.replicas if r.template_hash == current]
        while len(new) < desired:
            replica = await self._start_replica(worker, deployment, current)
            if replica is None:
                break
            new.append(replica)
        for replica in sorted(new, key=lambda r: r.order, reverse=True)[
            : max(0, len(new) - desired)
        ]:
            await self._stop_replica(worker, replica, delete_pod=True)
            new.remove(replica)
        old = [r for r in worker.replicas if r.template_hash != current]
        old_allowed = max(0, desired - sum(r.ready for r in new))
        for replica in sorted(old, key=lambda r: r.order, reverse=True)[
            : max(0, len(old) - old_allowed)
        ]:
            await self._stop_replica(worker, replica, delete_pod=True)
        self._report_status(worker, deployment, desired, current)

    def _report_status(
        self, worker: _DeploymentWorker, deployment: dict[str, Any], desired: int, current: str
    ) -> None:
        fresh = self.store.get_raw(DEPLOYMENTS, worker.namespace, worker.name)
        if fresh is None:
            return
        replicas = worker.replicas
        ready = sum(r.ready for r in replicas)
        updated = sum(r.template_hash == current for r in replicas)
        available = ready >= desired
        rolled_out = updated == desired == len(replicas) and available
        old_conditions = {c["type"]: c for c in (fresh.get("status") or {}).get("conditions") or []}
        conditions = [
            _condition(
                old_conditions,
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            ),
            _condition(
                old_conditions,
                "Progressing",
                True,
                "NewReplicaSetAvailable" if rolled_out else "ReplicaSetUpdated",
                f'ReplicaSet "{worker.name}-{current}" '
                + ("has successfully progressed." if rolled_out else "is progressing."),
            ),
        ]
        status = {
            "observedGeneration": deployment["metadata"].get("generation"),
            "replicas": len(replicas),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
            "conditions": conditions,
        }
        # Like the real API, counts that are zero are left out.
        patch = {"status": {key: (status[key] or None) for key in _STATUS_FIELDS}}
        with contextlib.suppress(ApiError):
            self.store.patch(
                DEPLOYMENTS,
                worker.namespace,
                worker.name,
                patch,
                patch_type="merge",
                subresource="status",
                manager="deployment-controller",
            )

    # -- replicas (kubelet) ----------------------------------------------------------------

    async def _start_replica(
        self, worker: _DeploymentWorker, deployment: dict[str, Any], current: str
    ) -> Replica | None:
        template = (deployment.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
        pod_name = f"{worker.name}-{current}-{suffix}"
        startup = startup_seconds_of(deployment, self.default_startup_seconds) * self.startup_scale
        launch = asyncio.ensure_future(
            self.launcher.launch(pod_name, copy.deepcopy(deployment), startup)
        )
        try:
            # Shielded: if the agent stops mid-launch, the replica is still stopped, not leaked.
            handle = await asyncio.shield(launch)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await launch).stop()
            raise
        except Exception:
            log.exception("replica launch failed", namespace=worker.namespace, pod=pod_name)
            asyncio.get_running_loop().call_later(1.0, worker.wake.set)
            return None
        replica = Replica(
            namespace=worker.namespace,
            pod_name=pod_name,
            template_hash=current,
            order=next(self._order),
            handle=handle,
            labels={**(template_meta.get("labels") or {}), "pod-template-hash": current},
            annotations={
                **(template_meta.get("annotations") or {}),
                PORT_ANNOTATION: str(handle.port),
            },
        )
        worker.replicas.append(replica)
        self._replicas_by_pod[(worker.namespace, pod_name)] = (worker, replica)
        self._create_pod(deployment, template, replica)
        replica.probe = asyncio.create_task(
            self._probe(worker, replica, startup, readiness_path_of(template)),
            name=f"probe-{pod_name}",
        )
        self._write_targets()
        log.info("replica started", namespace=worker.namespace, pod=pod_name, port=handle.port)
        return replica

    def _create_pod(
        self, deployment: dict[str, Any], template: dict[str, Any], replica: Replica
    ) -> None:
        metadata = deployment["metadata"]
        pod = {
            "metadata": {
                "name": replica.pod_name,
                "namespace": replica.namespace,
                "labels": replica.labels,
                "annotations": replica.annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**copy.deepcopy(template.get("spec") or {}), "nodeName": self.node_name},
        }
        self.store.create(PODS, pod, namespace=replica.namespace, manager="kube-controller-manager")
        self._report_pod(replica)

    def _report_pod(self, replica: Replica) -> None:
        ready = "True" if replica.ready else "False"
        status = {
            "phase": "Running",
            "podIP": replica.handle.host,
            "podIPs": [{"ip": replica.handle.host}],
            "hostIP": replica.handle.host,
            "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": now_rfc3339()},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now_rfc3339()},
            ],
        }
        with contextlib.suppress(ApiError):
            self.store.patch(
                PODS,
                replica.namespace,
                replica.pod_name,
                {"status": status},
                patch_type="merge",
                subresource="status",
                manager="kubelet",
            )

    async def _probe(
        self, worker: _DeploymentWorker, replica: Replica, startup_seconds: float, path: str
    ) -> None:
        assert self._session is not None
        await asyncio.sleep(startup_seconds)
        failures = 0
        while not replica.stopped:
            url = replica.handle.readiness_url(path)
            try:
                if url is None:
                    healthy = False
                else:
                    async with self._session.get(url) as response:
                        healthy = 200 <= response.status < 400
            except (aiohttp.ClientError, TimeoutError):
                healthy = False
            failures = 0 if healthy else failures + 1
            became_ready = healthy and not replica.ready
            became_unready = replica.ready and failures >= self.failure_threshold
            if became_ready or became_unready:
                replica.ready = healthy
                self._report_pod(replica)
                self._write_targets()  # a launcher may know the scrape address only now
                worker.wake.set()
                log.info("replica readiness", pod=replica.pod_name, ready=replica.ready)
            await asyncio.sleep(self.probe_interval)

    async def _stop_replica(
        self, worker: _DeploymentWorker, replica: Replica, *, delete_pod: bool
    ) -> None:
        if replica.stopped:
            return
        replica.stopped = True
        if replica in worker.replicas:
            worker.replicas.remove(replica)
        self._replicas_by_pod.pop((replica.namespace, replica.pod_name), None)
        if replica.probe is not None:
            replica.probe.cancel()
        if replica.ready and delete_pod:
            # As the endpoints controller does for a terminating pod: no new connections.
            replica.ready = False
            self._report_pod(replica)
        self._write_targets()
        try:
            await replica.handle.stop()
        except Exception:
            log.exception("replica stop failed", pod=replica.pod_name)
        if delete_pod:
            with contextlib.suppress(ApiError):
                self.store.delete(PODS, replica.namespace, replica.pod_name)
        log.info("replica stopped", namespace=replica.namespace, pod=replica.pod_name)

    async def _watch_pods(self) -> None:
        async for event_type, pod in self.store.watch(PODS):
            if event_type != "DELETED":
                continue
            found = self._replicas_by_pod.get(
                (pod["metadata"]["namespace"], pod["metadata"]["name"])
            )
            if found is not None:
                worker, replica = found
                await self._stop_replica(worker, replica, delete_pod=False)
                worker.wake.set()

    # -- garbage collector -----------------------------------------------------------------

    async def _collect_garbage(self) -> None:
        """As kube-controller-manager's garbage collector: an object all of whose owners (by
        uid) are gone is deleted, whether they went after it was written (a DELETED event)
        or before (a client still acting on an owner it had read, e.g. an operator's cycle
        in flight when its RoutingPolicy was deleted, writes an object owned by it)."""
        subscription = self.store.subscribe(None)
        try:
            alive = self._sweep()
            while (event := await subscription.queue.get()) is not None:
                if event.type == "DELETED":
                    alive = self._sweep()
                    continue
                metadata = event.object.get("metadata") or {}
                alive.add(metadata.get("uid"))
                if event.type == "ADDED" and self._orphaned(event.object, alive):
                    self._collect(event.resource, event.object)
        finally:
            self.store.unsubscribe(subscription)

    @staticmethod
    def _orphaned(obj: Mapping[str, Any], alive: set[str]) -> bool:
        owners = obj["metadata"].get("ownerReferences") or []
        return bool(owners) and not any(owner.get("uid") in alive for owner in owners)

    def _sweep(self) -> set[str]:
        """Delete every orphan; the uids of what exists."""
        objects = list(self.store.live_objects())
        alive = {obj["metadata"]["uid"] for _, obj in objects}
        for resource, obj in objects:
            if self._orphaned(obj, alive):
                self._collect(resource, obj)
        return alive

    def _collect(self, resource: Any, obj: Mapping[str, Any]) -> None:
        metadata = obj["metadata"]
        # That very object (by uid), not one created since under its name.
        with contextlib.suppress(ApiError):
            self.store.delete(
                resource,
                metadata.get("namespace"),
                metadata["name"],
                preconditions={"uid": metadata["uid"]},
            )
            log.info("garbage collected", kind=obj.get("kind"), name=metadata["name"])

    # -- projected volumes -----------------------------------------------------------------

    def _project(self, kind: str, namespace: str, name: str, directory: Path) -> bool:
        projection = _Projection(kind, namespace, name, directory)
        self._projections.append(projection)
        obj = self.store.get_raw(f"v1/{kind}", namespace, name)
        if obj is not None:
            self._write_projection(projection, obj)
        return obj is not None

    def _write_projection(self, projection: _Projection, obj: Mapping[str, Any]) -> None:
        files: dict[str, bytes] = {}
        if projection.kind == "secrets":
            for key, value in (obj.get("data") or {}).items():
                files[key] = base64.b64decode(value)
        else:
            for key, value in (obj.get("data") or {}).items():
                files[key] = str(value).encode()
            for key, value in (obj.get("binaryData") or {}).items():
                files[key] = base64.b64decode(value)
        if project_files(projection.directory, files):
            log.info(
                "projected",
                kind=projection.kind,
                name=projection.name,
                dir=str(projection.directory),
            )

    async def _watch_projected(self) -> None:
        subscription = self.store.subscribe(None)
        try:
            while (event := await subscription.queue.get()) is not None:
                if event.type == "DELETED" or event.resource.group != "":
                    continue
                metadata = event.object["metadata"]
                for projection in self._projections:
                    if (event.resource.plural, metadata.get("namespace"), metadata["name"]) == (
                        projection.kind,
                        projection.namespace,
                        projection.name,
                    ):
                        self._write_projection(projection, event.object)
        finally:
            self.store.unsubscribe(subscription)

    # -- Prometheus targets ----------------------------------------------------------------

    def _write_targets(self) -> None:
        if self.file_sd_path is None:
            return
        groups = []
        for worker in self._workers.values():
            for replica in worker.replicas:
                if replica.annotations.get("prometheus.io/scrape") != "true":
                    continue
                labels = {"namespace": replica.namespace, "pod": replica.pod_name}
                for label, pod_label in self.target_labels.items():
                    if pod_label in replica.labels:
                        labels[label] = replica.labels[pod_label]
                if path := replica.annotations.get("prometheus.io/path"):
                    labels["__metrics_path__"] = path
                target = replica.handle.metrics_target()
                if target is not None:
                    groups.append({"targets": [target], "labels": labels})
        path = self.file_sd_path
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        staging.write_text(json.dumps(groups, indent=1))
        os.replace(staging, path)


def _condition(
    old: Mapping[str, Mapping[str, Any]], kind: str, true: bool, reason: str, message: str
) -> dict[str, Any]:
    status = "True" if true else "False"
    previous = old.get(kind) or {}
    same = previous.get("status") == status and previous.get("reason") == reason
    transition = previous.get("lastTransitionTime") if same else now_rfc3339()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": previous.get("lastUpdateTime", transition) if same else transition,
        "lastTransitionTime": transition,
    }
