"""An HTTPS front that lets through only requests with one bearer token, as
kube-rbac-proxy (or OpenShift's oauth-proxy) does in front of a cluster's Prometheus.

`async with BearerTokenProxy(upstream, token, cert, key) as proxy:` serves
`proxy.url` (https, 127.0.0.1, a free port) with the certificate given; requests without
`Authorization: Bearer <token>` get 401, the others are passed to `upstream` (plain HTTP)
and answered with what it answered.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
import aiohttp.web

# The client session decompresses what it reads, so the encoding headers go too.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}


class BearerTokenProxy:
    def __init__(self, upstream: str, token: str, cert: Path, key: Path):
        self.upstream = upstream.rstrip("/")
        self.token = token
        self._cert, self._key = cert, key
        self._runner: aiohttp.web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = ""
        self.refused = 0  # requests answered 401
        self.passed = 0  # requests sent upstream

    async def __aenter__(self) -> Self:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cert, self._key)
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"https://{host}:{port}"
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return aiohttp.web.Response(status=401, text="Unauthorized\n")
        self.passed += 1
        assert self._client is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"
        }
        async with self._client.request(
            request.method,
            f"{self.upstream}{request.rel_url}",
            headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            return aiohttp.web.Response(
                status=answer.status,
                body=body,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
