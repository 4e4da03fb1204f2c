"""The gateway pod's sidecar: watch the ConfigMap and Secret the operator writes and put
their files where Envoy watches, atomically, the moment they change.

A ConfigMap volume alone reaches a running pod only after the kubelet's sync period (up to
about a minute); a watch delivers the change in milliseconds. The two objects carry the same
config-hash annotation; files are published only when both agree, so Envoy never sees
clusters from one render and routes from another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp.web
import structlog

from modelfleet.api.names import routes_secret_name
from modelfleet.apply.files import publish_gateway
from modelfleet.apply.kube import KubeClient, resource_path
from modelfleet.apply.validate import EnvoyNotFound, InvalidEnvoyConfig, validate_with_envoy
from modelfleet.render.gateway import files_from_objects

log = structlog.get_logger(__name__)


# Reconnects back off up to this long: an API server that is down is asked again soon,
# but not hammered; one that comes back is seen within this.
MAX_BACKOFF_SECONDS = 10.0


class Backoff:
    def __init__(self, first: float = 0.5, limit: float = MAX_BACKOFF_SECONDS):
        self.first, self.limit, self.next = first, limit, first

    def reset(self) -> None:
        self.next = self.first

    def take(self) -> float:
        wait, self.next = self.next, min(self.next * 2, self.limit)
        return wait


class GatewaySync:
    """Keeps `out_dir` holding the files of the gateway's ConfigMap + Secret, validated by
    Envoy before they replace the last good ones, through watch cuts and API outages of
    any length."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        config_map: str,
        out_dir: Path,
        validate: Callable[[Mapping[str, str]], None] = validate_with_envoy,
    ):
        self.kube = kube
        self.namespace = namespace
        self.config_map = config_map
        self.secret = routes_secret_name(config_map)
        self.out_dir = out_dir
        self.validate = validate
        self.changed = asyncio.Event()
        self.published_hash: str | None = None
        self.refused_hash: str | None = None
        self.log = log.bind(namespace=namespace, name=config_map)

    async def sync_once(self) -> bool:
        """Publish what the two objects hold; False while there is nothing (valid) to publish."""
        config_map = await self.kube.get(
            resource_path("v1", "configmaps", self.namespace, self.config_map)
        )
        secret = await self.kube.get(resource_path("v1", "secrets", self.namespace, self.secret))
        if config_map is None or secret is None:
            return False
        read = files_from_objects(config_map, secret)
        if read is None:
            return False
        files, digest = read
        if digest == self.refused_hash:
            return False
        # Files Envoy accepted once need no second check (publishing only puts back what
        # changed on disk); new ones are checked before they can replace the last good.
        validate = None if digest == self.published_hash else self.validate
        try:
            written = await asyncio.to_thread(publish_gateway, self.out_dir, files, validate)
        except (InvalidEnvoyConfig, EnvoyNotFound) as err:
            self.refused_hash = digest
            self.log.error(
                "gateway.files_refused",
                config_hash=digest,
                error=str(err)[:500],
                serving=self.published_hash,
            )
            return False
        if written:
            self.log.info(
                "gateway.files_published", config_hash=digest, files=[p.name for p in written]
            )
        self.published_hash = digest
        return True

    async def _watch(self, plural: str, name: str) -> None:
        path = resource_path("v1", plural, self.namespace)
        backoff = Backoff()
        while True:
            try:
                async for _ in self.kube.watch(path, {"fieldSelector": f"metadata.name={name}"}):
                    backoff.reset()
                    self.changed.set()
            except Exception as err:  # noqa: BLE001 - any cut stream: reconnect, never die
                wait = backoff.take()
                self.log.warning(
                    "gateway.watch_failed",
                    watched=f"{plural}/{name}",
                    error=f"{type(err).__name__}: {str(err)[:200]}",
                    retry_in=wait,
                )
                await asyncio.sleep(wait)
            self.changed.set()  # re-read after every (re)connect: events may have been missed

    async def serve_health(self, port: int) -> aiohttp.web.AppRunner:
        """GET /healthz: 200 once files are published (the kubelet starts Envoy then)."""

        async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
            if self.published_hash is None:
                return aiohttp.web.Response(status=503, text="no config published yet\n")
            return aiohttp.web.Response(text=f"serving {self.published_hash}\n")

        app = aiohttp.web.Application()
        app.router.add_get("/healthz", healthz)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "0.0.0.0", port).start()
        return runner

    async def run(self, resync_seconds: float = 60.0) -> None:
        watchers = [
            asyncio.create_task(self._watch("configmaps", self.config_map)),
            asyncio.create_task(self._watch("secrets", self.secret)),
        ]
        backoff = Backoff()
        try:
            while True:
                self.changed.clear()
                wait = resync_seconds
                try:
                    await self.sync_once()
                    backoff.reset()
                except Exception as err:  # noqa: BLE001 - the last good files keep serving
                    wait = min(backoff.take(), resync_seconds)
                    self.log.warning(
                        "gateway.sync_failed",
                        error=f"{type(err).__name__}: {str(err)[:200]}",
                        serving=self.published_hash,
                        retry_in=wait,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), wait)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
