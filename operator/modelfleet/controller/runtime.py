"""Wiring of the running operator: what the kopf handlers share (the API client, the
controller, the wake-up events), which Prometheus, where Events go, kopf's settings."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from modelfleet.apply.kube import KubeClient
from modelfleet.apply.login import login_with_kubernetes_client
from modelfleet.controller.clock import ScaledClock, WallClock
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.controller.prometheus_sources import OperatorPrometheus, sources_for
from modelfleet.controller.reconcile import PoolController
from modelfleet.render.gateway import GatewaySettings

# A refresh allocates many short-lived objects while the caches hold many long-lived ones,
# and CPython's default thresholds (700, 10, 10) make it walk all of them every few
# thousand allocations. What a refresh builds (dicts, lists, models) is freed by reference
# counting, not by the cycle collector, so it may run far less often: about a third less
# CPU per refresh in bench/operator.py, which runs with the same thresholds.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_garbage_collection() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class Wakeups:
    events: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def event(self, namespace: str, name: str) -> asyncio.Event:
        return self.events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        self.event(namespace, name).set()


class Runtime:
    """What the handlers share: the API client, the controller, the wake-up events."""

    def __init__(
        self, build_controller, metrics, settings_hook=None, login_hook=None, kubeconfig=None
    ):
        # None: in-cluster service account, else $KUBECONFIG or ~/.kube/config.
        self.kubeconfig: Path | None = kubeconfig
        self.wakeups = Wakeups()
        self.metrics = metrics
        self._build_controller = build_controller
        self._settings_hook = settings_hook
        self._login_hook = login_hook
        self._controller = None
        self.kube: KubeClient | None = None
        self.connection: kopf.ConnectionInfo | None = None
        self._login_kwargs: dict[str, Any] = {}

    def login(self, **kwargs: Any) -> kopf.ConnectionInfo | None:
        self._login_kwargs = kwargs
        info = self._login_hook(**kwargs) if self._login_hook else None
        if info is None:
            info = login_with_kubernetes_client(self.kubeconfig, **kwargs)
        self.connection = info
        return info

    def configure(self, settings: kopf.OperatorSettings) -> None:
        if self._settings_hook:
            self._settings_hook(settings)

    def controller(self):
        if self._controller is None:
            assert self.connection is not None, "kopf logs in before any handler runs"
            self.kube = KubeClient(
                self.connection, relogin=lambda: self.login(**self._login_kwargs)
            )
            self._controller = self._build_controller(self.kube)
        return self._controller

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """What the operator remembers of a deleted resource goes with it."""
        if self._controller is not None:
            self._controller.forget(kind, namespace, name)

    async def close(self) -> None:
        if self.kube is not None:
            await self.kube.close()


def post_kopf_event(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
    kopf.event(dict(obj), type=type, reason=reason, message=message)


def kopf_settings(settings: kopf.OperatorSettings) -> None:
    # kopf would turn each of its own INFO logs into a Kubernetes Event; ours are explicit.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


def build_runtime(
    prometheus: OperatorPrometheus | None = None,
    clock: WallClock | ScaledClock | None = None,
    login: Callable[..., kopf.ConnectionInfo | None] | None = None,
    gateway: GatewaySettings | None = None,
    kubeconfig: Path | None = None,
) -> Runtime:
    clock = clock or WallClock()
    metrics = OperatorMetrics()

    def build_controller(kube: KubeClient) -> PoolController:
        return PoolController(
            kube=kube,
            metrics_for=sources_for(kube, prometheus or OperatorPrometheus()),
            post_event=post_kopf_event,
            gateway=gateway or GatewaySettings(),
            clock=clock,
            metrics=metrics,
        )

    return Runtime(
        build_controller,
        metrics,
        settings_hook=kopf_settings,
        login_hook=login,
        kubeconfig=kubeconfig,
    )


def serve_operator_metrics(runtime: Runtime, host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host, registry=runtime.metrics.registry)
