"""A simulated vLLM replica: the OpenAI API and vLLM's metrics over a GPU speed model.

One replica is one aiohttp server on its own port, driven by a ``BatchEngine`` in
virtual GPU time. Many replicas share one event loop: a replica costs one scheduler
task that sleeps until the engine's next event, plus one coroutine per open request.

Time: the engine runs ``speedup`` times faster than the wall clock, so a replica with
``speedup=10`` behaves like a GPU ten times as fast; latencies in ``/metrics`` are the
wall-clock seconds clients see. ``startup_seconds`` is wall-clock time too.

Usage, by hand::

    python -m modelfleet_testbed.sim.replica --model Qwen/Qwen3-30B-A3B-Instruct-2507 --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from modelfleet_testbed.sim import openai_api as api
from modelfleet_testbed.sim.batching import BatchEngine, FinishedRequest, FirstToken, RequestTooLong
from modelfleet_testbed.sim.gpu import GpuProfile, get_profile, profile_for_model
from modelfleet_testbed.sim.replica_metrics import CONTENT_TYPE, ReplicaMetrics

__all__ = ["SERVED_BY_HEADER", "RunningReplica", "start_replica"]

SERVED_BY_HEADER = "x-served-by"
DEFAULT_OUTPUT_TOKENS = 128
# Streams get their tokens at least this often (wall seconds), in one chunk per wake.
STREAM_INTERVAL_SECONDS = 0.05
# A timer that fires this close (wall seconds) before its event counts as on time.
_TIMER_SLACK_SECONDS = 0.002

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class _Live:
    """A request in the engine and the handler waiting on it."""

    arrived_at: float  # engine time
    prompt_tokens: int
    finish_reason: str
    stream: bool = False
    pooling: bool = False  # an embedding: prefill only, no generated tokens
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    generated: int = 0
    finished: FinishedRequest | None = None
    aborted: bool = False


class RunningReplica:
    """One simulated replica, serving on ``url`` once started."""

    def __init__(
        self,
        name: str,
        served_model: str,
        profile: GpuProfile,
        *,
        aliases: Sequence[str] = (),
        startup_seconds: float = 0.0,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        speedup: float = 1.0,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        if startup_seconds < 0:
            raise ValueError(f"startup_seconds must be >= 0, got {startup_seconds}")
        self.name = name
        self.served_model = served_model
        self.model_names = (served_model, *[alias for alias in aliases if alias != served_model])
        self.profile = profile
        self.speedup = speedup
        self.startup_seconds = startup_seconds
        self.default_output_tokens = default_output_tokens
        self.engine = BatchEngine(profile, max_num_seqs, max_num_batched_tokens)
        self.metrics = ReplicaMetrics(served_model)
        self.host = ""
        self.port = 0
        self._ready = False
        self._draining = False
        self._live: dict[int, _Live] = {}
        self._streams: dict[int, _Live] = {}
        self._ids = itertools.count()
        self._wakeup = asyncio.Event()
        self._due: float | None = None
        self._origin = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self._ready

    # -- life cycle ------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(self._stamp)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]
        self._tasks.append(asyncio.create_task(self._schedule(), name=f"replica-{self.name}"))
        if self.startup_seconds > 0:
            self._tasks.append(asyncio.create_task(self._load(), name=f"replica-{self.name}-load"))
        else:
            self._ready = True
        log.info(
            "replica.started",
            replica=self.name,
            model=self.served_model,
            profile=self.profile.name,
            url=self.url,
            startup_seconds=self.startup_seconds,
            max_num_seqs=self.engine.max_num_seqs,
            speedup=self.speedup,
        )

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Refuse new requests, let running ones finish for up to ``grace_seconds``,
        abort the rest and close the server."""
        self._draining = True
        if grace_seconds > 0 and self._live:
            deadline = time.monotonic() + grace_seconds
            while self._live and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self._advance()
        for request_id, live in list(self._live.items()):
            self._abort(request_id, live)
        # Let the handlers see their abort before the server closes under them.
        await asyncio.sleep(0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("replica.stopped", replica=self.name, url=self.url)

    async def _load(self) -> None:
        await asyncio.sleep(self.startup_seconds)
        self._ready = True
        log.info("replica.ready", replica=self.name)

    # -- engine driving ----------------------------------------------------------------

    def _virtual_now(self) -> float:
        assert self._loop is not None
        return (self._loop.time() - self._origin) * self.speedup

    def _advance(self) -> None:
        """Bring the engine up to now, hand its events to the waiting handlers."""
        now = self._virtual_now()
        if self._due is not None and self._due - now <= _TIMER_SLACK_SECONDS * self.speedup:
            now = max(now, self._due)
        now = max(now, self.engine.now)
        for event in self.engine.advance_to(now):
            if isinstance(event, FirstToken):
                live = self._live.get(event.request_id)
                if live is not None:
                    self._first_token(event, live)
            else:
                live = self._live.pop(event.request_id, None)
                self._streams.pop(event.request_id, None)
                if live is not None:
                    self._finish(event, live)
        for request_id, live in self._streams.items():
            generated = self.engine.generated_tokens(request_id)
            if generated != live.generated:
                live.generated = generated
                live.wake.set()
        self.metrics.set_load(
            self.engine.num_running, self.engine.num_waiting, self.engine.kv_cache_usage
        )

    def _first_token(self, event: FirstToken, live: _Live) -> None:
        self.metrics.first_token(live.prompt_tokens, (event.at - live.arrived_at) / self.speedup)
        live.generated = max(live.generated, 1)
        if live.stream:
            live.wake.set()

    def _finish(self, event: FinishedRequest, live: _Live) -> None:
        generated = 0 if live.pooling else event.output_tokens
        self.metrics.finished(event, live.finish_reason, generated, 1.0 / self.speedup)
        live.generated = event.output_tokens
        live.finished = event
        live.wake.set()

    def _abort(self, request_id: int, live: _Live) -> None:
        generated = self.engine.generated_tokens(request_id) if request_id in self.engine else 0
        self.engine.cancel(request_id)
        self._live.pop(request_id, None)
        self._streams.pop(request_id, None)
        self.metrics.aborted(generated)
        live.aborted = True
        live.wake.set()
        self._wakeup.set()

    async def _schedule(self) -> None:
        assert self._loop is not None
        while True:
            self._advance()
            due = self.engine.next_event_time()
            self._due = due
            delay: float | None = None
            if due is not None:
                delay = max(0.0, (due - self._virtual_now()) / self.speedup)
            if self._streams and (delay is None or delay > STREAM_INTERVAL_SECONDS):
                delay = STREAM_INTERVAL_SECONDS
            self._wakeup.clear()
            if delay is None:
                await self._wakeup.wait()
                continue
            timer = self._loop.call_later(delay, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()

    # -- HTTP ----------------------------------------------------------------------------

    async def _stamp(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        response.headers[SERVED_BY_HEADER] = self.name

    @staticmethod
    def _error(error: api.ApiError) -> web.Response:
        return web.json_response(api.error_body(error), status=error.status)

    def _check_serving(self) -> None:
        if self._draining:
            raise api.ApiError(503, f"replica {self.name} is shutting down")
        if not self._ready:
            raise api.ApiError(503, f"replica {self.name} is still loading its model")

    def _check_model(self, model: str | None) -> None:
        if model is not None and model not in self.model_names:
            raise api.ApiError(404, f"The model `{model}` does not exist.", "model")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise api.ApiError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise api.ApiError(400, "the request body must be a JSON object")
        return body

    def _submit(
        self,
        prompt_tokens: int,
        output_tokens: int,
        finish_reason: str,
        *,
        stream: bool = False,
        pooling: bool = False,
    ) -> tuple[int, _Live]:
        self._advance()
        request_id = next(self._ids)
        at = self.engine.now
        try:
            self.engine.submit(request_id, prompt_tokens, output_tokens, at=at)
        except RequestTooLong as error:
            raise api.ApiError(400, str(error), "max_tokens") from None
        live = _Live(at, prompt_tokens, finish_reason, stream=stream, pooling=pooling)
        self._live[request_id] = live
        if stream:
            self._streams[request_id] = live
        self._wakeup.set()
        return request_id, live

    def _release(self, request_id: int, live: _Live) -> None:
        """Abort a request whose handler is leaving early (client gone, cancelled)."""
        if self._live.get(request_id) is live:
            self._abort(request_id, live)

    @staticmethod
    async def _settled(live: _Live) -> None:
        while live.finished is None and not live.aborted:
            await live.wake.wait()
            live.wake.clear()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        parse: Callable[[dict[str, Any], int], api.GenerationRequest] = (
            api.parse_chat if kind == "chat" else api.parse_completion
        )
        try:
            self._check_serving()
            parsed = parse(await self._body(request), self.default_output_tokens)
            self._check_model(parsed.model)
            request_id, live = self._submit(
                parsed.prompt_tokens,
                parsed.output_tokens,
                parsed.finish_reason,
                stream=parsed.stream,
            )
        except api.ApiError as error:
            return self._error(error)
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        response_id = f"{prefix}-{self.name}-{request_id}"
        model = parsed.model or self.served_model
        created = int(time.time())
        try:
            if parsed.stream:
                return await self._stream(request, kind, response_id, created, model, parsed, live)
            await self._settled(live)
            if live.aborted:
                return self._error(api.ApiError(503, f"replica {self.name} stopped"))
            text = api.fake_text(0, parsed.output_tokens)
            usage = api.usage(parsed.prompt_tokens, parsed.output_tokens)
            build = api.chat_response if kind == "chat" else api.completion_response
            return web.json_response(
                build(response_id, created, model, text, parsed.finish_reason, usage)
            )
        finally:
            self._release(request_id, live)

    async def _stream(
        self,
        request: web.Request,
        kind: str,
        response_id: str,
        created: int,
        model: str,
        parsed: api.GenerationRequest,
        live: _Live,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        def piece(text: str | None, finish_reason: str | None = None) -> dict[str, Any]:
            if kind == "chat":
                delta = None if text is None else {"content": text}
                return api.chat_chunk(response_id, created, model, delta, finish_reason)
            return api.completion_chunk(response_id, created, model, text, finish_reason)

        sent = 0
        try:
            while True:
                await live.wake.wait()
                live.wake.clear()
                if live.aborted:
                    return response
                if sent == 0 and live.generated > 0 and kind == "chat":
                    await send(
                        api.chat_chunk(
                            response_id, created, model, {"role": "assistant", "content": ""}
                        )
                    )
                if live.finished is not None:
                    await send(
                        piece(api.fake_text(sent, live.generated - sent), parsed.finish_reason)
                    )
                    if parsed.include_usage:
                        final = piece(None)
                        final["usage"] = api.usage(parsed.prompt_tokens, parsed.output_tokens)
                        await send(final)
                    await send("[DONE]")
                    await response.write_eof()
                    return response
                if live.generated > sent:
                    await send(piece(api.fake_text(sent, live.generated - sent)))
                    sent = live.generated
        except ConnectionResetError:
            return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        submitted: list[tuple[int, _Live]] = []
        try:
            self._check_serving()
            parsed = api.parse_embedding(await self._body(request))
            self._check_model(parsed.model)
            for tokens in parsed.prompt_tokens:
                submitted.append(self._submit(tokens, 1, "stop", pooling=True))
        except api.ApiError as error:
            for request_id, live in submitted:
                self._release(request_id, live)
            return self._error(error)
        try:
            for _, live in submitted:
                await self._settled(live)
            if any(live.aborted for _, live in submitted):
                return self._error(api.ApiError(503, f"replica {self.name} stopped"))
            return web.json_response(
                api.embedding_response(parsed, parsed.model or self.served_model)
            )
        finally:
            for request_id, live in submitted:
                self._release(request_id, live)

    async def _models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": self.served_model,
                "parent": None,
            }
            for name in self.model_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        if self._ready and not self._draining:
            return web.Response(status=200)
        return web.Response(status=503, text="loading" if not self._ready else "stopping")

    async def _metrics(self, request: web.Request) -> web.Response:
        self._advance()
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def start_replica(
    name: str,
    served_model: str,
    profile: GpuProfile | str,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_seconds: float = 0.0,
    max_num_seqs: int | None = None,
    speedup: float = 1.0,
    *,
    aliases: Sequence[str] = (),
    max_num_batched_tokens: int | None = None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> RunningReplica:
    """Start a simulated replica in the running event loop and return it serving.

    ``profile`` is a ``GpuProfile`` or its name; ``max_num_seqs`` defaults to vLLM's
    default for the profile's GPU; ``aliases`` are further served model names (vLLM's
    ``--served-model-name`` takes several). ``/health`` answers 503 for
    ``startup_seconds`` and 200 after.
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    replica = RunningReplica(
        name,
        served_model,
        profile,
        aliases=aliases,
        startup_seconds=startup_seconds,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        speedup=speedup,
        default_output_tokens=default_output_tokens,
    )
    await replica.start(host, port)
    return replica


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_testbed.sim.replica",
        description="Serve one simulated vLLM replica (OpenAI API, vLLM metrics).",
    )
    parser.add_argument("--model", required=True, help="model name, e.g. Qwen/Qwen2.5-7B-Instruct")
    parser.add_argument(
        "--served-model-name", nargs="+", default=None, help="names to serve (default: --model)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default=None, help="replica name for x-served-by")
    parser.add_argument("--profile", default=None, help="GPU profile (default: nearest by size)")
    parser.add_argument("--startup-seconds", type=float, default=0.0)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--speedup", type=float, default=1.0)
    return parser.parse_args(argv)


async def _serve(arguments: argparse.Namespace) -> None:
    names = arguments.served_model_name or [arguments.model]
    profile = (
        get_profile(arguments.profile) if arguments.profile else profile_for_model(arguments.model)
    )
    replica = await start_replica(
        arguments.name or f"replica-{arguments.port}",
        names[0],
        profile,
        host=arguments.host,
        port=arguments.port,
        startup_seconds=arguments.startup_seconds,
        max_num_seqs=arguments.max_num_seqs,
        speedup=arguments.speedup,
        aliases=names[1:],
        max_num_batched_tokens=arguments.max_num_batched_tokens,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await replica.stop()


def main(argv: Sequence[str] | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ]
    )
    asyncio.run(_serve(_arguments(argv)))


if __name__ == "__main__":
    main()
