"""kopf handlers: thin glue from cluster events to `PoolController`.

One daemon per ModelPool runs the refresh loop (every `spec.metrics.refreshSeconds`) and
wakes early when the pool's spec, one of its Reservations or RoutingPolicies changes.
Watch-event handlers are used for those wake-ups so that kopf keeps no bookkeeping
annotations on user-owned objects (no GitOps drift).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog

from modelfleet.apply.kube import ApiError, KubeClient

GROUP, VERSION = "modelfleet.io", "v1alpha1"
DEFAULT_REFRESH_SECONDS = 30
ERROR_BACKOFF_SECONDS = 5

log = structlog.get_logger(__name__)


@dataclass
class Wakeups:
    events: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def event(self, namespace: str, name: str) -> asyncio.Event:
        return self.events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        self.event(namespace, name).set()


def spec_changed(body: Mapping[str, Any]) -> bool:
    """A change the operator has not seen yet (its own status patches keep generation)."""
    generation = body.get("metadata", {}).get("generation")
    observed = (body.get("status") or {}).get("observedGeneration")
    return generation is None or generation != observed


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    info = memo.runtime.login(**kwargs)
    return info


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.configure(settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.runtime.close()


@kopf.daemon(GROUP, VERSION, "modelpools", cancellation_timeout=5.0)
async def refresh_pool(
    body: kopf.Body,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    wakeup = memo.runtime.wakeups.event(namespace, name)
    logger = log.bind(namespace=namespace, name=name, kind="ModelPool")
    try:
        while not stopped:
            wakeup.clear()
            delay = _refresh_seconds(body)
            try:
                await memo.runtime.controller().reconcile(body)
            except ApiError as err:
                logger.warning("pool.cycle_failed", error=str(err))
                delay = min(delay, ERROR_BACKOFF_SECONDS)
            await _sleep_until(wakeup, stopped, delay)
    finally:
        memo.runtime.metrics.forget_pool(namespace, name)


def _refresh_seconds(body: Mapping[str, Any]) -> float:
    metrics = (body.get("spec") or {}).get("metrics") or {}
    return float(metrics.get("refreshSeconds") or DEFAULT_REFRESH_SECONDS)


async def _sleep_until(wakeup: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float):
    waits = [asyncio.ensure_future(wakeup.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@kopf.on.event(GROUP, VERSION, "modelpools")
async def pool_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type in ("ADDED", "MODIFIED") and spec_changed(body):
        memo.runtime.wakeups.wake(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(GROUP, VERSION, "reservations")
@kopf.on.event(GROUP, VERSION, "routingpolicies")
async def dependent_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    pool = (body.get("spec") or {}).get("pool")
    if pool and (type == "DELETED" or spec_changed(body)):
        memo.runtime.wakeups.wake(body["metadata"]["namespace"], pool)


class Runtime:
    """What the handlers share: the API client, the controller, the wake-up events."""

    def __init__(self, build_controller, metrics, settings_hook=None, login_hook=None):
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
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
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

    async def close(self) -> None:
        if self.kube is not None:
            await self.kube.close()
