"""kopf handlers: thin glue from cluster events to `PoolController` (through the `Runtime`
in kopf's memo).

One daemon per ModelPool runs the refresh loop (every `spec.metrics.refreshSeconds`) and
wakes early when the pool's spec, one of its Reservations or RoutingPolicies changes.
Watch-event handlers are used for those wake-ups so that kopf keeps no bookkeeping
annotations on user-owned objects (no GitOps drift).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import kopf
import structlog

from modelfleet.api.names import GROUP, POLICIES, POOLS, RESERVATIONS, VERSION

DEFAULT_REFRESH_SECONDS = 30
ERROR_BACKOFF_SECONDS = 5

log = structlog.get_logger(__name__)


def spec_changed(body: Mapping[str, Any]) -> bool:
    """A change the operator has not seen yet (its own status patches keep generation)."""
    generation = body.get("metadata", {}).get("generation")
    observed = (body.get("status") or {}).get("observedGeneration")
    return generation is None or generation != observed


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    # An exec credential plugin is a subprocess that may take a while (cloud CLIs): keep
    # kopf's event loop free meanwhile.
    return await asyncio.to_thread(memo.runtime.login, **kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.configure(settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.runtime.close()


@kopf.daemon(GROUP, VERSION, POOLS, cancellation_timeout=5.0)
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
            except Exception as err:
                # Whatever failed, the loop goes on (kopf would restart it only after a
                # minute, deaf to spec changes meanwhile): nothing was applied, status says why.
                logger.warning("pool.cycle_failed", error=repr(err)[:500], exc_info=True)
                await memo.runtime.controller().report_failure(body, err)
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


@kopf.on.event(GROUP, VERSION, POOLS)
async def pool_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    meta = body["metadata"]
    if type == "DELETED":
        memo.runtime.forget("ModelPool", meta["namespace"], meta["name"])
        memo.runtime.wakeups.events.pop((meta["namespace"], meta["name"]), None)
        await memo.runtime.controller().reconcile_orphans(meta["namespace"], meta["name"])
    elif type in ("ADDED", "MODIFIED") and spec_changed(body):
        memo.runtime.wakeups.wake(meta["namespace"], meta["name"])


@kopf.on.event(GROUP, VERSION, RESERVATIONS)
@kopf.on.event(GROUP, VERSION, POLICIES)
async def dependent_changed(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    pool = (body.get("spec") or {}).get("pool")
    meta = body["metadata"]
    if type == "DELETED":
        memo.runtime.forget(body.get("kind", ""), meta["namespace"], meta["name"])
    if pool and (type == "DELETED" or spec_changed(body)):
        memo.runtime.wakeups.wake(meta["namespace"], pool)
        if type != "DELETED":
            await memo.runtime.controller().reconcile_orphans(meta["namespace"], pool)
