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
from pathlib import Path

import structlog

from modelfleet.api.names import routes_secret_name
from modelfleet.apply.files import publish_gateway
from modelfleet.apply.kube import ApiError, KubeClient, resource_path
from modelfleet.render.gateway import files_from_objects

log = structlog.get_logger(__name__)


class GatewaySync:
    def __init__(self, kube: KubeClient, namespace: str, config_map: str, out_dir: Path):
        self.kube = kube
        self.namespace = namespace
        self.config_map = config_map
        self.secret = routes_secret_name(config_map)
        self.out_dir = out_dir
        self.changed = asyncio.Event()
        self.published_hash: str | None = None

    async def sync_once(self) -> bool:
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
        # The operator validated these with Envoy before writing them.
        written = await asyncio.to_thread(publish_gateway, self.out_dir, files, None)
        if written:
            log.info(
                "gateway.files_published",
                namespace=self.namespace,
                name=self.config_map,
                config_hash=digest,
                files=[p.name for p in written],
            )
        self.published_hash = digest
        return True

    async def _watch(self, plural: str, name: str) -> None:
        path = resource_path("v1", plural, self.namespace)
        while True:
            try:
                async for _ in self.kube.watch(path, {"fieldSelector": f"metadata.name={name}"}):
                    self.changed.set()
            except (TimeoutError, ApiError, OSError) as err:
                log.warning(
                    "gateway.watch_failed",
                    namespace=self.namespace,
                    name=name,
                    error=str(err)[:200],
                )
                await asyncio.sleep(1)
            self.changed.set()  # re-read after every (re)connect: events may have been missed

    async def run(self, resync_seconds: float = 60.0) -> None:
        watchers = [
            asyncio.create_task(self._watch("configmaps", self.config_map)),
            asyncio.create_task(self._watch("secrets", self.secret)),
        ]
        try:
            while True:
                self.changed.clear()
                try:
                    await self.sync_once()
                except ApiError as err:
                    log.warning(
                        "gateway.sync_failed",
                        namespace=self.namespace,
                        name=self.config_map,
                        error=str(err)[:200],
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), resync_seconds)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
