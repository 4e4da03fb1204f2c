"""Stand-ins for model servers: each variant answers which variant it is and the headers it
saw, and counts its requests. Runs as its own process so the load generator in the test
process does not share a GIL with it:

    python -m tests.envoy.echo_backend a b c   # prints {"a": port, ...} once listening

`GET /_hits` on a backend's own port (not through the gateway) returns how many requests
it has served since the last `DELETE /_hits`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from aiohttp import web

CONTROL_PATH = "/_hits"


def variant_app(variant: str) -> web.Application:
    hits = 0

    async def echo(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        body = await request.read()
        return web.json_response(
            {
                "variant": variant,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body_bytes": len(body),
            }
        )

    async def read_hits(_: web.Request) -> web.Response:
        return web.json_response({"variant": variant, "hits": hits})

    async def reset_hits(_: web.Request) -> web.Response:
        nonlocal hits
        hits = 0
        return web.json_response({"variant": variant, "hits": hits})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get(CONTROL_PATH, read_hits)
    app.router.add_delete(CONTROL_PATH, reset_hits)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def serve(variants: list[str]) -> None:
    ports: dict[str, int] = {}
    runners = []
    for variant in variants:
        runner = web.AppRunner(variant_app(variant), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports[variant] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The parent holds our stdin: when it goes away (even killed), so do we.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1:]))
