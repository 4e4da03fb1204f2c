"""Clients for the gateway tests: one request at a time, or many at once with aiohttp."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello."}]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str
    complete: bool = True  # False when the body broke off

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def variant(self) -> str | None:
        return self.json().get("variant") if self.status == 200 else None


def call(
    base_url: str,
    path: str = CHAT,
    body: Any = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    raw: bytes | None = None,
    chunked: bool = False,
    timeout: float = 10,
) -> Reply:
    """One request on a fresh connection; `body` is sent as JSON, `raw` as is; `chunked`
    sends it without a content-length."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"content-type": "application/json", **(headers or {})}
    try:
        connection.request(
            method or ("POST" if data is not None else "GET"),
            path,
            iter([data]) if chunked and data is not None else data,
            all_headers,
            encode_chunked=chunked,
        )
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            return Reply(response.status, headers, response.read().decode())
        except http.client.IncompleteRead as broken:
            return Reply(response.status, headers, broken.partial.decode(), complete=False)
    finally:
        connection.close()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    status: int  # 0 when the request failed without a response
    variant: str | None


async def _send(session: aiohttp.ClientSession, url: str, body: Any, headers: dict) -> Outcome:
    started = time.monotonic()
    try:
        async with session.post(url, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            variant = payload.get("variant") if response.status == 200 else None
            return Outcome(started, response.status, variant)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return Outcome(started, 0, None)


def send_many(
    base_url: str, bodies: Sequence[Any], headers: dict[str, str], concurrency: int = 20
) -> list[Outcome]:
    """POST every body to the chat endpoint, `concurrency` at a time, on kept-alive
    connections."""

    async def run() -> list[Outcome]:
        queue = list(enumerate(bodies))
        results: list[Outcome | None] = [None] * len(bodies)
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                while queue:
                    index, body = queue.pop()
                    results[index] = await _send(session, base_url + CHAT, body, headers)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return [r for r in results if r is not None]

    return asyncio.run(run())


async def steady_load(
    base_url: str,
    body: Any,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    during: Any = None,
) -> list[Outcome]:
    """`connections` clients each sending back-to-back requests for `seconds`; `during` is
    an awaitable run alongside (e.g. a config swap at some point)."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                outcomes.append(await _send(session, base_url + CHAT, body, headers))

        tasks = [client() for _ in range(connections)]
        if during is not None:
            tasks.append(during)
        await asyncio.gather(*tasks)
    return outcomes
