"""A small async Kubernetes API client for the calls the operator makes.

It authenticates with the same `kopf.ConnectionInfo` that kopf logs in with, so the
operator and its handlers always talk to one cluster as one identity. 429 and 5xx answers
are retried with backoff; a 409 is raised as `Conflict` so the caller re-reads and retries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import kopf
import structlog

from modelfleet.api.names import API_VERSION, FIELD_MANAGER, PLURALS

log = structlog.get_logger(__name__)

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str):
        self.status = status
        super().__init__(f"{method} {path} -> {status}: {body[:300]}")


class Conflict(ApiError):
    pass


class NotFound(ApiError):
    pass


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [prefix]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


# Every kind the operator writes: the model servers, the gateways' configs and the objects
# that run each gateway (render/gateway_workload.py).
_PLURALS = {
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    **{(API_VERSION, kind): plural for kind, plural in PLURALS.items()},
}


def object_path(obj: Mapping[str, Any], subresource: str | None = None) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    plural = _PLURALS[(api_version, kind)]
    meta = obj["metadata"]
    return resource_path(api_version, plural, meta.get("namespace"), meta["name"], subresource)


def object_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Just what `object_path` needs, from a full object."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
    }


def _material(path: Any, data: Any, directory: str, name: str) -> str | None:
    """aiohttp's ssl wants files; kubeconfigs often inline base64 data instead."""
    if path:
        return os.fspath(path)
    if data:
        raw = data if isinstance(data, bytes) else data.encode()
        try:
            decoded = base64.b64decode(raw, validate=True)
        except ValueError:
            decoded = raw
        file = os.path.join(directory, name)
        with open(file, "wb") as handle:
            handle.write(decoded)
        return file
    return None


class KubeClient:
    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        max_retries: int = 5,
        backoff: float = 0.2,
        relogin: Callable[[], kopf.ConnectionInfo | None] | None = None,
        user_agent: str = "modelfleet-operator",
    ):
        """`user_agent` names the client in the API server's audit log (and is its default
        field manager)."""
        self._info = info
        self._user_agent = user_agent
        # Service-account tokens are projected and rotate: on a 401, log in again once.
        self._relogin = relogin
        self._max_retries = max_retries
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="modelfleet-kube-")

    def _ssl_context(self) -> ssl.SSLContext | bool:
        info = self._info
        if not info.server.startswith("https"):
            return False
        if info.insecure:
            return False
        context = ssl.create_default_context(
            cafile=_material(info.ca_path, info.ca_data, self._tmp.name, "ca.crt")
        )
        cert = _material(info.certificate_path, info.certificate_data, self._tmp.name, "tls.crt")
        key = _material(info.private_key_path, info.private_key_data, self._tmp.name, "tls.key")
        if cert:
            context.load_cert_chain(cert, key)
        return context

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if self._info.token:
            headers["Authorization"] = f"{self._info.scheme or 'Bearer'} {self._info.token}"
        elif self._info.username:
            pair = f"{self._info.username}:{self._info.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    async def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl_context())
            self._session = aiohttp.ClientSession(
                base_url=self._info.server.rstrip("/") + "/",
                headers=self._headers(),
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def _reset_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._tmp.cleanup()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        session = await self._ensure_session()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        delay = self._backoff
        relogged = False
        for attempt in range(self._max_retries + 1):
            try:
                async with session.request(
                    method, path.lstrip("/"), data=data, headers=headers, params=params
                ) as response:
                    text = await response.text()
                    if response.status < 400:
                        return json.loads(text) if text else None
                    retry_after = response.headers.get("Retry-After")
                    status = response.status
            except (TimeoutError, aiohttp.ClientConnectionError) as err:
                if attempt == self._max_retries:
                    raise
                log.warning("kube.retry", method=method, path=path, error=str(err))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if status == 401 and self._relogin is not None and not relogged:
                # A login may run an exec credential plugin: not on the event loop.
                fresh = await asyncio.to_thread(self._relogin)
                if fresh is not None:
                    relogged = True
                    self._info = fresh
                    await self._reset_session()
                    session = await self._ensure_session()
                    continue
            if status == 404:
                raise NotFound(status, method, path, text)
            if status == 409:
                raise Conflict(status, method, path, text)
            if status not in RETRIED_STATUSES or attempt == self._max_retries:
                raise ApiError(status, method, path, text)
            wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
            log.warning("kube.retry", method=method, path=path, status=status, wait=wait)
            await asyncio.sleep(min(wait, 10.0))
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except NotFound:
            return None

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, params=params)
        return list((result or {}).get("items") or [])

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's field manager (forced: the plan owns it)."""
        return await self.request(
            "PATCH",
            object_path(obj),
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def merge_patch(
        self, path: str, patch: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        target = f"{path}/{subresource}" if subresource else path
        return await self.request(
            "PATCH", target, body=patch, content_type="application/merge-patch+json"
        )

    async def watch(
        self, path: str, params: Mapping[str, str] | None = None, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events of a collection, one dict per event, until the server ends it."""
        session = await self._ensure_session()
        query = {"watch": "true", "timeoutSeconds": str(timeout_seconds), **(params or {})}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with session.get(path.lstrip("/"), params=query, timeout=timeout) as response:
            if response.status >= 400:
                text = await response.text()
                raise ApiError(response.status, "WATCH", path, text)
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def delete(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            await self.request("DELETE", path)
