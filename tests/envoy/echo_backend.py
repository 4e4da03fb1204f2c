"""Stand-ins for model servers: each variant answers which variant it is, the headers it saw
and a `usage` like vLLM's, and counts its requests. Runs as its own process so the load
generator in the test process does not share a GIL with it:

    python -m tests.envoy.echo_backend a b c   # prints {"a": port, ...} once listening

Control paths on a backend's own port (not through the gateway):
- `GET /_hits`: requests served since the last `DELETE /_hits` (which also resets the mode);
- `PUT /_mode` `{"status": 503}` answers every request with that status, `{"delay_seconds":
  2}` waits that long before the response headers, `{"stream_interval_seconds": 0.2}` spaces
  stream chunks, `{"break_stream": true}` drops the connection after a stream's first chunk,
  `{"pad_bytes": n}` puts n bytes of data before the usage of an answer (as an embeddings
  answer is big), `{"pad_after_usage_bytes": n}` n bytes after it, `{"chunked": true}` sends
  an answer without a content-length, in 16 KiB writes;
- `GET /_last`: the last request's body (its first 64 KiB) and headers.

A request with `"stream": true` gets server-sent events as vLLM sends them: three content
chunks, then, only if `stream_options.include_usage` is true, a chunk with no choices and
the usage, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from aiohttp import web

CONTROL_PATHS = ("/_hits", "/_mode", "/_last")
LAST_BODY_BYTES = 64 * 1024
STREAM_CHUNKS = 3
COMPLETION_TOKENS = 7


def usage_for(body: bytes) -> dict[str, int]:
    """A usage that depends on the request, so tests can tell answers apart."""
    prompt = len(body) // 4 + 1
    return {
        "prompt_tokens": prompt,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt + COMPLETION_TOKENS,
    }


def parse(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def variant_app(variant: str) -> web.Application:
    state: dict[str, Any] = {"hits": 0, "mode": {}, "last": {}}

    async def stream(
        request: web.Request, body: bytes, asked: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        interval = float(state["mode"].get("stream_interval_seconds", 0.01))
        for index in range(STREAM_CHUNKS):
            chunk = {
                "variant": variant,
                "choices": [{"index": 0, "delta": {"content": str(index)}}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if state["mode"].get("break_stream"):
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(interval)
        options = asked.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage") is True:
            final = {"variant": variant, "choices": [], "usage": usage_for(body)}
            await response.write(f"data: {json.dumps(final)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def echo(request: web.Request) -> web.StreamResponse:
        state["hits"] += 1
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        state["last"] = {
            "body": body[:LAST_BODY_BYTES].decode(errors="replace"),
            "headers": headers,
        }
        mode = state["mode"]
        if mode.get("delay_seconds"):
            await asyncio.sleep(float(mode["delay_seconds"]))
        if mode.get("status"):
            error = {"error": {"message": f"{variant} is failing", "type": "server_error"}}
            return web.json_response(error, status=int(mode["status"]))
        asked = parse(body)
        if asked.get("stream") is True:
            return await stream(request, body, asked)
        answer: dict[str, Any] = {
            "variant": variant,
            "path": request.path,
            "headers": headers,
            "body_bytes": len(body),
        }
        if mode.get("pad_bytes"):
            answer["data"] = "x" * int(mode["pad_bytes"])
        answer["usage"] = usage_for(body)
        if mode.get("pad_after_usage_bytes"):
            answer["after"] = "y" * int(mode["pad_after_usage_bytes"])
        if mode.get("chunked"):
            return await chunked(request, json.dumps(answer).encode())
        return web.json_response(answer)

    async def chunked(request: web.Request, data: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), 16384):
            await response.write(data[start : start + 16384])
        await response.write_eof()
        return response

    async def read_hits(_: web.Request) -> web.Response:
        return web.json_response({"variant": variant, "hits": state["hits"]})

    async def reset(_: web.Request) -> web.Response:
        state.update(hits=0, mode={})
        return web.json_response({"variant": variant, "hits": 0})

    async def set_mode(request: web.Request) -> web.Response:
        state["mode"] = await request.json()
        return web.json_response(state["mode"])

    async def read_last(_: web.Request) -> web.Response:
        return web.json_response(state["last"])

    app = web.Application(client_max_size=128 * 1024 * 1024)
    app.router.add_get("/_hits", read_hits)
    app.router.add_delete("/_hits", reset)
    app.router.add_put("/_mode", set_mode)
    app.router.add_get("/_last", read_last)
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
