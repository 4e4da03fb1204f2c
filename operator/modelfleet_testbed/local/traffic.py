"""Small OpenAI-style request senders for the local fleet (tests, benchmarks)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import aiohttp


async def chat_burst(urls: Sequence[str], model: str, count: int, max_tokens: int) -> list[int]:
    """`count` concurrent chat requests spread over `urls`; their HTTP statuses."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello " * 50}],
        "max_tokens": max_tokens,
    }
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> int:
            url = urls[index % len(urls)] + "/v1/chat/completions"
            async with session.post(url, json=body) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(i) for i in range(count)))


async def served_by(
    url: str, count: int, headers: Mapping[str, str], body: Mapping[str, object]
) -> list[str]:
    """Send `count` requests one after another, each on a new connection (so the pods of a
    gateway all get some: the kernel spreads connections between them); the Deployment
    that answered each (the replica's `x-served-by` pod name without its two generated
    suffixes)."""
    served = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(headers=dict(headers), connector=connector) as session:
        for _ in range(count):
            async with session.post(url, json=dict(body)) as response:
                await response.read()
                if response.status != 200:
                    raise AssertionError(f"{url} answered {response.status}")
                served.append(response.headers["x-served-by"].rsplit("-", 2)[0])
    return served
