"""Faults the e2e tests inject from outside the processes under test: a Prometheus that
lies or fails, and a TCP proxy in front of the API server that cuts streams and goes dark.

Both run on 127.0.0.1, on free ports, in a thread of their own, and stop with the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from modelfleet_testbed.local.processes import free_port


class _Server(ThreadingHTTPServer):
    # A pool's queries arrive at once; past the default backlog of 5 a connection waits
    # for a SYN retransmit (1 s), which is the operator's whole deadline in these tests.
    request_queue_size = 64


SUBQUERY = re.compile(r"\[\d+s:\d+s\]")  # a range-vector subquery, e.g. `[300s:1s]`


class LyingPrometheus:
    """Answers Prometheus' query API from a script: `waiting`/`running` per variant of any
    pool, sampled now (the look-back subqueries: no history); `mode` "fresh" (true numbers),
    "inf" (+Inf waiting), "503"."""

    def __init__(self) -> None:
        self.mode = "fresh"
        self.waiting: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.port = free_port()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner._answer(self)

            def do_POST(self) -> None:  # noqa: N802
                owner._answer(self)

            def log_message(self, *_: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LyingPrometheus:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        if self.mode == "503":
            request.send_response(503)
            request.end_headers()
            request.wfile.write(b"<html>upstream connect error: secret-internal-host</html>")
            return
        parsed = urlparse(request.path)
        params = parse_qs(parsed.query)
        if request.command == "POST":
            length = int(request.headers.get("Content-Length") or 0)
            params.update(parse_qs(request.rfile.read(length).decode()))
        query = params.get("query", [""])[0]
        now = time.time()
        result = []
        result_type = "vector"
        if SUBQUERY.search(query):  # the request-rate look-backs: no history here
            result_type = "matrix"
        elif "num_requests_waiting" in query and "timestamp(" in query:
            result = [self._sample(v, now, now) for v in self.waiting]
        elif "num_requests_waiting" in query:
            result = [
                self._sample(v, "+Inf" if self.mode == "inf" else n, now)
                for v, n in self.waiting.items()
            ]
        elif "num_requests_running" in query:
            result = [self._sample(v, n, now) for v, n in self.running.items()]
        body = json.dumps(
            {"status": "success", "data": {"resultType": result_type, "result": result}}
        ).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    @staticmethod
    def _sample(variant: str, value: object, now: float) -> dict:
        return {"metric": {"variant": variant}, "value": [now, str(value)]}


class ApiProxy:
    """A TCP proxy to the API server. `cut()` drops every open connection mid-stream (a
    watch cut mid-event); `go_dark()` also refuses new ones until `restore()`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.dark = False
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> ApiProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dark:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    def _call(self, function) -> None:
        asyncio.run_coroutine_threadsafe(function(), self._loop).result(10)

    def cut(self) -> None:
        async def cut() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._call(cut)

    def go_dark(self) -> None:
        self.dark = True
        self.cut()

    def restore(self) -> None:
        self.dark = False

    def stop(self) -> None:
        self.go_dark()

        async def close() -> None:
            if self._server is not None:
                self._server.close()

        self._call(close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
