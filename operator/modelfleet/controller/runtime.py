"""Wiring of the running operator: which Prometheus, where events go, kopf settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from modelfleet.api.modelpool import ModelPool
from modelfleet.apply.kube import KubeClient
from modelfleet.controller.clock import ScaledClock, WallClock
from modelfleet.controller.gateways import GatewayPublisher, GatewaySettings
from modelfleet.controller.handlers import Runtime
from modelfleet.controller.metrics import OperatorMetrics
from modelfleet.controller.reconcile import PoolController
from modelfleet.observe.prometheus import PrometheusSource


def post_kopf_event(obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
    kopf.event(dict(obj), type=type, reason=reason, message=message)


def kopf_settings(settings: kopf.OperatorSettings) -> None:
    # kopf would turn each of its own INFO logs into a Kubernetes Event; ours are explicit.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


def build_runtime(
    prometheus_url: str | None,
    clock: WallClock | ScaledClock | None = None,
    login: Callable[..., kopf.ConnectionInfo | None] | None = None,
    gateway: GatewaySettings | None = None,
) -> Runtime:
    clock = clock or WallClock()
    metrics = OperatorMetrics()
    sources: dict[str, PrometheusSource] = {}

    def metrics_for(pool: ModelPool) -> PrometheusSource | None:
        url = pool.spec.metrics.prometheus_url or prometheus_url
        if not url:
            return None
        if url not in sources:
            sources[url] = PrometheusSource(url)
        return sources[url]

    def build_controller(kube: KubeClient) -> PoolController:
        return PoolController(
            kube=kube,
            metrics_for=metrics_for,
            post_event=post_kopf_event,
            clock=clock,
            metrics=metrics,
            after_plan=[
                GatewayPublisher(
                    kube, gateway or GatewaySettings(), clock=clock.now, metrics=metrics
                )
            ],
        )

    return Runtime(build_controller, metrics, settings_hook=kopf_settings, login_hook=login)


def serve_operator_metrics(runtime: Runtime, host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host, registry=runtime.metrics.registry)
