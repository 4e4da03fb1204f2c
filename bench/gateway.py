"""Gateway overhead: a trivial backend called directly vs through the rendered gateway.

1. Added latency: the backend is Envoy itself answering a fixed body (so the backend is
   never the bottleneck) once it has read the whole request, on a connection it keeps open,
   as a model server does; the load generator is `wrk` (Debian package `wrk`), and both
   paths run in the same process lifetime, one after the other, with the same request: a
   chat completion with an API key, routed on its JSON body. The gateway does everything it
   does in production (key check, per-key rate limit, the Lua body reading and input check,
   usage reading, a route with a fallback, JSON access log to a file, token counters).
2. Time to first byte of a stream, direct and through the gateway (which also asks the
   stream for its usage): a small asyncio server sends the first event at once.
3. The worst bodies at the body limit (the default, 4 MiB): how long the gateway takes to
   read each, and how much they delay another client's small requests on the same worker.

    python -m bench.gateway      # writes bench/results/gateway.json, prints a table
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.keys import ApiKey
from modelfleet.api.load import load_resources
from modelfleet.api.routingpolicy import GatewayLimits
from modelfleet.apply.files import publish_gateway
from modelfleet.apply.validate import envoy_binary
from modelfleet.plan.routing.planner import plan_routing
from modelfleet.render.envoy.names import LISTENER_NAME
from modelfleet.render.envoy.render import render_gateway

RESULTS = Path(__file__).parent / "results" / "gateway.json"
WARMUP_SECONDS = 1
# (name, connections, seconds per round, rounds): one connection shows the added latency per
# request; several show throughput when the gateway is busy. The two paths alternate in
# rounds (direct first, then gateway first, ...) and each number is the median over the
# rounds: on two cores shared with other work, one 3 s run per path moved the added p50 by
# +-0.1 ms from run to run, as whatever else ran fell on one path only.
SCENARIOS = [("one_connection", 1, 2, 5), ("16_connections", 16, 2, 3)]
KEY = ApiKey(id="bench", key="sk-bench-0123456789abcdef", tenant="bench")
BODY = {"task_type": "chat", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM_BODY = {
    "task_type": "stream",
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello."}],
}
ANSWER = (
    '{"id":"bench","object":"chat.completion","choices":[],'
    '"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
)
# Streams timed per path; the two paths alternate in rounds so drift hits both alike.
TTFB_REQUESTS = 400
TTFB_ROUNDS = 4
# Worst bodies: each sent this many times, one after another, while wrk sends small ones.
WORST_REPEATS = 4
WORST_LOAD_SECONDS = 4

FLEET = """
apiVersion: modelfleet.io/v1alpha1
kind: ModelPool
metadata: {name: bench, namespace: bench}
spec:
  gpuBudget: 2
  variants:
    - {name: echo, model: bench/echo, gpusPerReplica: 1, replicas: {min: 1, max: 1}}
    - {name: stream, model: bench/stream, gpusPerReplica: 1, replicas: {min: 1, max: 1}}
---
apiVersion: modelfleet.io/v1alpha1
kind: RoutingPolicy
metadata: {name: bench, namespace: bench}
spec:
  pool: bench
  gateway:
    configMap: bench
    apiKeySecret: bench
    rateLimit: {requestsPerMinute: 10000000}
  routes:
    # As in production: the chat route has a fallback, so it goes through a fallback cluster.
    - name: chat
      match: {taskType: [chat]}
      backends: [{variant: echo, weight: 100}]
      fallback: stream
    - name: stream
      match: {taskType: [stream]}
      backends: [{variant: stream, weight: 100}]
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("the gateway benchmark needs wrk: apt-get install wrk")
    return found


# The backend reads whole requests up to this size: the worst bodies at the gateway's limit too.
BACKEND_MAX_REQUEST_BYTES = 16 * 1024 * 1024


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def static_bootstrap(
    listener: str, manager: dict[str, Any], clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    """One listener on a free loopback port with this connection manager, admin on another."""
    loopback = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    chain = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    return {
        "admin": {"address": loopback},
        "static_resources": {
            "listeners": [{"name": listener, "address": loopback, "filter_chains": [chain]}],
            "clusters": clusters,
        },
    }


def backend_bootstrap() -> dict[str, Any]:
    """An Envoy that answers every request with ANSWER: a backend that costs ~nothing.

    It reads the whole request body before it answers (the `buffer` filter), as a model
    server does, and so keeps the connection open. A bare direct_response answers as soon
    as it has the headers and then closes the connection, because the body it did not read
    is still coming: the gateway then opened a new upstream connection for every request,
    inside the measured time, a cost no vLLM backend makes it pay."""
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "backend",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "backend",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": ANSWER}},
                            # What vLLM sends (direct_response alone says text/plain).
                            "response_headers_to_add": [
                                {
                                    "header": {"key": "content-type", "value": "application/json"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                }
                            ],
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": BACKEND_MAX_REQUEST_BYTES,
                },
            },
            ROUTER,
        ],
    }
    return static_bootstrap("backend", manager, [])


def hop_bootstrap(backend: str) -> dict[str, Any]:
    """An Envoy that only forwards to the backend (a router, nothing else): what a proxy hop
    costs on this machine, apart from the gateway's own work."""
    host, port = split_address(backend)
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "hop",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "hop",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}],
                }
            ]
        },
        "http_filters": [ROUTER],
    }
    address = {"socket_address": {"address": host, "port_value": port}}
    cluster = {
        "name": "backend",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": "backend",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    return static_bootstrap("hop", manager, [cluster])


def start_envoy(stack: ExitStack, bootstrap: Path, work: Path, name: str) -> str:
    """Start Envoy (one worker) and return the address its listener got for port 0."""
    admin_file = work / f"{name}.admin"
    base_id = str(os.getpid() % 10_000 * 10 + len(name))
    command = [envoy_binary(), "-c", str(bootstrap), "--concurrency", "1"]
    command += ["--disable-hot-restart", "--base-id", base_id, "--log-level", "error"]
    command += ["--admin-address-path", str(admin_file)]
    with open(work / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(_stop, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} Envoy exited: {(work / f'{name}.log').read_text()}")
        address = _listener(admin_file)
        if address:
            return address
        time.sleep(0.05)
    raise RuntimeError(f"{name} Envoy did not start listening in 15 s")


def _listener(admin_file: Path) -> str | None:
    if not admin_file.exists() or not admin_file.read_text().strip():
        return None
    try:
        with urllib.request.urlopen(
            f"http://{admin_file.read_text().strip()}/listeners?format=json", timeout=2
        ) as response:
            statuses = json.loads(response.read())["listener_statuses"]
    except OSError:
        return None
    for status in statuses:
        address = status["local_address"]["socket_address"]
        # The gateway's own listener (not its stats listener); the backend has one.
        if status.get("name") in (LISTENER_NAME, "backend", "hop") and address.get("port_value"):
            return f"{address['address']}:{address['port_value']}"
    return None


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def render_bench_gateway(config_dir: Path, backends: dict[str, str], access_log: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fleet_file:
        fleet_file.write(FLEET)
        fleet_file.flush()
        resources = load_resources([fleet_file.name])
    (policy,) = resources.policies
    pool = resources.pool(policy.namespace, policy.spec.pool)
    assert pool is not None
    table = plan_routing(policy, pool, {})
    files = render_gateway(
        table,
        pool,
        policy,
        [KEY],
        {variant: split_address(address) for variant, address in backends.items()},
        listen=("127.0.0.1", 0),
        admin=("127.0.0.1", free_port()),
        config_dir=str(config_dir),
        access_log_path=str(access_log),
        stats=("127.0.0.1", 0),
    )
    publish_gateway(config_dir, files)


def split_address(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def start_sse_backend(stack: ExitStack) -> str:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._sse_backend"],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(_stop_child, process)
    port = process.stdout.readline().strip() if process.stdout else ""
    if not port:
        raise RuntimeError("the streaming backend did not start")
    return f"127.0.0.1:{port}"


def _stop_child(process: subprocess.Popen) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    command = [wrk_binary(), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRK_RESULT"))
    requests, duration_us, errors, non_2xx, p50, p99, worst = (int(v) for v in line.split()[1:])
    return {
        "requests": requests,
        "requests_per_second": round(requests / (duration_us / 1e6), 1),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "max_ms": worst / 1000,
        "errors": errors,
        "non_2xx": non_2xx,
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, Any]:
    """One path over several rounds: the median of each number, the total of the counts."""
    out: dict[str, Any] = {
        key: round(statistics.median(run[key] for run in runs), 3)
        for key in ("requests_per_second", "p50_ms", "p99_ms", "max_ms")
    }
    for key in ("requests", "errors", "non_2xx"):
        out[key] = sum(int(run[key]) for run in runs)
    out["p50_ms_per_round"] = [run["p50_ms"] for run in runs]
    return out


def measure(targets: dict[str, str], script: Path, connections: int, seconds: int, rounds: int):
    runs: dict[str, list[dict[str, float]]] = {path: [] for path in targets}
    for index in range(rounds):
        order = list(targets) if index % 2 == 0 else list(reversed(targets))
        for path in order:
            runs[path].append(run_wrk(targets[path], script, connections, seconds))
    return {path: median_run(values) for path, values in runs.items()}


def upstream_connections(admin_file: Path, cluster: str) -> dict[str, int]:
    """Requests and connections the gateway sent to a cluster: the backend reads each request
    whole and keeps its connection, so a few connections carry all the requests (one per
    request would mean the gateway pays a connection set-up inside the measured time)."""
    with urllib.request.urlopen(
        f"http://{admin_file.read_text().strip()}/stats?format=json&filter=^cluster\\.{cluster}\\.",
        timeout=5,
    ) as response:
        stats = {
            s["name"]: s.get("value") for s in json.loads(response.read())["stats"] if "name" in s
        }
    return {
        "requests": int(stats.get(f"cluster.{cluster}.upstream_rq_total") or 0),
        "connections": int(stats.get(f"cluster.{cluster}.upstream_cx_total") or 0),
    }


def compare(direct: dict[str, float], gateway: dict[str, float]) -> dict[str, float]:
    return {
        "requests_per_second": round(
            gateway["requests_per_second"] / direct["requests_per_second"], 3
        ),
        "p50": round(gateway["p50_ms"] / direct["p50_ms"], 3),
        "p99": round(gateway["p99_ms"] / direct["p99_ms"], 3),
        "added_p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 3),
        "added_p99_ms": round(gateway["p99_ms"] - direct["p99_ms"], 3),
    }


def http_request(path: str, data: bytes, auth: bool) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    if auth:
        head += f"authorization: Bearer {KEY.key}\r\n"
    return (head + f"content-length: {len(data)}\r\n\r\n").encode() + data


def time_first_bytes(address: str, request: bytes, count: int) -> list[float]:
    """Seconds from sending each request to the first event of its stream, one stream after
    another on one kept-alive connection (each read to its end)."""
    timings = []
    with socket.create_connection(split_address(address), timeout=10) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            received = b""
            started = time.perf_counter()
            client.sendall(request)
            first = None
            while not received.endswith(b"0\r\n\r\n"):
                data = client.recv(65536)
                if not data:
                    raise RuntimeError(f"{address} closed the stream: {received[-200:]!r}")
                received += data
                if first is None and b"data: " in received:
                    first = time.perf_counter() - started
            if not received.startswith(b"HTTP/1.1 200") or first is None:
                raise RuntimeError(f"{address} did not stream: {received[:300]!r}")
            timings.append(first)
    return timings


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ttfb(direct: str, hop: str, gateway: str) -> dict[str, Any]:
    body = json.dumps(STREAM_BODY).encode()
    paths = {
        "direct": (direct, http_request("/v1/chat/completions", body, auth=False)),
        "envoy_hop": (hop, http_request("/v1/chat/completions", body, auth=False)),
        "gateway": (gateway, http_request("/v1/chat/completions", body, auth=True)),
    }
    for address, request in paths.values():
        time_first_bytes(address, request, 50)  # warm up
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(TTFB_ROUNDS):
        for name, (address, request) in paths.items():
            timings[name] += time_first_bytes(address, request, TTFB_REQUESTS // TTFB_ROUNDS)
    result: dict[str, Any] = {"requests_per_path": TTFB_REQUESTS}
    for name, values in timings.items():
        result[name] = {
            "p50_ms": round(1000 * statistics.median(values), 3),
            "p90_ms": round(1000 * percentile(values, 0.9), 3),
        }
    result["added_p50_ms"] = round(result["gateway"]["p50_ms"] - result["direct"]["p50_ms"], 3)
    result["added_p90_ms"] = round(result["gateway"]["p90_ms"] - result["direct"]["p90_ms"], 3)
    hop_p50 = result["envoy_hop"]["p50_ms"]
    result["envoy_hop_added_p50_ms"] = round(hop_p50 - result["direct"]["p50_ms"], 3)
    result["gateway_over_envoy_hop_p50_ms"] = round(result["gateway"]["p50_ms"] - hop_p50, 3)
    return result


def worst_bodies(limit: int) -> dict[str, bytes]:
    """Valid chat requests just under `limit` bytes, each hard to read in its own way."""
    head = b'{"task_type":"chat","messages":[{"role":"user","content":"hi"}],"pad":['
    tail = b"]}"
    room = limit - len(head) - len(tail) - 16

    def elements(element: bytes) -> bytes:
        count = room // (len(element) + 1)
        return head + b",".join([element] * count) + tail

    text = b"hello world " * (room // 12)
    # One message object of many short members: each key is a string the gateway decodes.
    members, size, index = [], 0, 0
    while size < room - 64:
        member = b'"k%d":0' % index
        members.append(member)
        size += len(member) + 1
        index += 1
    many_keys = b'{"task_type":"chat","messages":[{"role":"user","content":"hi",'
    many_keys += b",".join(members) + b"}]}"
    return {
        "tiny_numbers": elements(b"0"),
        "empty_arrays": elements(b"[]"),
        "empty_strings": elements(b'""'),
        "long_prompt": b'{"task_type":"chat","messages":[{"role":"user","content":"'
        + text
        + b'"}]}',
        "many_keys": many_keys,
    }


def send_big(address: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    with socket.create_connection(split_address(address), timeout=30) as client:
        client.sendall(http_request("/v1/chat/completions", body, auth=True))
        received = b""
        while b"\r\n\r\n" not in received:
            received += client.recv(65536)
    return int(received.split(b" ", 2)[1]), time.perf_counter() - started


def worst_case(gateway: str, script: Path, limit: int) -> dict[str, Any]:
    """Each worst body sent WORST_REPEATS times while wrk sends small requests on another
    connection to the same (single) worker: the big body's own time, and the small
    requests' latency next to that of a quiet run."""
    url = f"http://{gateway}/v1/chat/completions"
    quiet = run_wrk(url, script, 1, WORST_LOAD_SECONDS)
    result: dict[str, Any] = {
        "body_limit_bytes": limit,
        "small_requests_quiet": quiet,
        "bodies": {},
    }
    for name, body in worst_bodies(limit).items():
        outcomes: list[tuple[int, float]] = []

        def sender(body: bytes = body, outcomes: list = outcomes) -> None:
            time.sleep(0.5)
            for _ in range(WORST_REPEATS):
                outcomes.append(send_big(gateway, body))
                time.sleep(0.3)

        thread = threading.Thread(target=sender)
        thread.start()
        loaded = run_wrk(url, script, 1, WORST_LOAD_SECONDS)
        thread.join()
        statuses = sorted({status for status, _ in outcomes})
        if statuses != [200]:
            raise RuntimeError(f"worst body {name}: the gateway answered {statuses}")
        result["bodies"][name] = {
            "bytes": len(body),
            "gateway_read_and_answer_ms": round(1000 * max(t for _, t in outcomes), 1),
            "small_requests_while_sent": loaded,
            "small_request_added_max_ms": round(loaded["max_ms"] - quiet["max_ms"], 3),
        }
    return result


def run() -> dict[str, Any]:
    """Measure, write bench/results/gateway.json, and return what was written."""
    load_before = round(os.getloadavg()[0], 2)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-")))
        (work / "backend.yaml").write_text(yaml.safe_dump(backend_bootstrap()))
        backend = start_envoy(stack, work / "backend.yaml", work, "backend")
        streamer = start_sse_backend(stack)
        config_dir = work / "gateway"
        render_bench_gateway(config_dir, {"echo": backend, "stream": streamer}, work / "access.log")
        gateway = start_envoy(stack, config_dir / "envoy.yaml", work, "gateway")
        (work / "hop.yaml").write_text(yaml.safe_dump(hop_bootstrap(backend)))
        hop = start_envoy(stack, work / "hop.yaml", work, "hop")
        script = work / "request.lua"
        body, auth = json.dumps(json.dumps(BODY)), json.dumps(f"Bearer {KEY.key}")
        script.write_text(WRK_SCRIPT % {"body": body, "auth": auth})
        targets = {
            "direct": f"http://{backend}/v1/chat/completions",
            "envoy_hop": f"http://{hop}/v1/chat/completions",
            "gateway": f"http://{gateway}/v1/chat/completions",
        }
        for url in targets.values():
            warm = run_wrk(url, script, 4, WARMUP_SECONDS)
            if warm["errors"] or warm["non_2xx"] or not warm["requests"]:
                raise RuntimeError(f"{url} does not answer 200: {warm}")
        scenarios = {}
        for name, connections, seconds, rounds in SCENARIOS:
            measured = measure(targets, script, connections, seconds, rounds)
            scenarios[name] = {
                "connections": connections,
                "seconds": seconds * rounds,
                "rounds": rounds,
                **measured,
                "gateway_vs_direct": compare(measured["direct"], measured["gateway"]),
                # How much of that a bare proxy hop costs on this machine at this time, and
                # what the gateway's own work adds on top of it.
                "envoy_hop_vs_direct": compare(measured["direct"], measured["envoy_hop"]),
                "gateway_vs_envoy_hop": compare(measured["envoy_hop"], measured["gateway"]),
            }
        upstream = upstream_connections(work / "gateway.admin", "echo")
        (work / "stream-hop.yaml").write_text(yaml.safe_dump(hop_bootstrap(streamer)))
        stream_hop = start_envoy(stack, work / "stream-hop.yaml", work, "stream-hop")
        stream = ttfb(streamer, stream_hop, gateway)
        worst = worst_case(gateway, script, GatewayLimits().max_body_bytes)
    result = {
        "benchmark": "gateway",
        "what": "POST /v1/chat/completions with an API key, routed on the body's task_type; "
        "backend: Envoy answering a fixed body once it read the request, keep-alive; "
        "envoy_hop: an Envoy with only a router in front of the same backend; "
        "load: wrk, 1 thread; each Envoy 1 worker",
        "envoy": subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True)
        .stdout.strip()
        .split("version: ")[-1],
        "cpus": os.cpu_count(),
        # Other work on the machine skews both paths; this says how busy it was.
        "load_average_1m_at_start": load_before,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "scenarios": scenarios,
        "gateway_to_backend": upstream,
        "stream_first_byte": stream,
        "worst_bodies": worst,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def headline(result: dict[str, Any]) -> str:
    one = result["scenarios"]["one_connection"]["gateway_vs_direct"]
    many = result["scenarios"]["16_connections"]["gateway_vs_direct"]
    stream = result["stream_first_byte"]
    worst = max(
        body["gateway_read_and_answer_ms"] for body in result["worst_bodies"]["bodies"].values()
    )
    return (
        f"+{one['added_p50_ms']:.2f} ms p50 per request (1 connection; a bare Envoy hop "
        f"+{result['scenarios']['one_connection']['envoy_hop_vs_direct']['added_p50_ms']:.2f}); "
        f"{many['requests_per_second']:.2f}x direct req/s at 16 connections; "
        f"+{stream['added_p50_ms']:.2f} ms stream first byte; worst body {worst:.0f} ms"
    )


def print_table(result: dict[str, Any]) -> None:
    row = "{:<16} {:<10} {:>9} {:>8} {:>8}"
    print(row.format("scenario", "path", "req/s", "p50 ms", "p99 ms"))
    for name, scenario in result["scenarios"].items():
        for path in ("direct", "envoy_hop", "gateway"):
            m = scenario[path]
            rps, p50, p99 = m["requests_per_second"], m["p50_ms"], m["p99_ms"]
            print(row.format(name, path, f"{rps:.0f}", f"{p50:.3f}", f"{p99:.3f}"))
        ratio = scenario["gateway_vs_direct"]
        rps, p50, p99 = ratio["requests_per_second"], ratio["p50"], ratio["p99"]
        print(row.format("", "ratio", f"{rps:.3f}", f"{p50:.3f}", f"{p99:.3f}"))
        own = scenario["gateway_vs_envoy_hop"]["added_p50_ms"]
        hop = scenario["envoy_hop_vs_direct"]["added_p50_ms"]
        print(f"{'':<16} added p50: a bare Envoy hop {hop:.3f} ms, the gateway's work {own:.3f} ms")
    upstream = result["gateway_to_backend"]
    print(
        f"gateway -> backend: {upstream['connections']} connections for "
        f"{upstream['requests']} requests (kept alive by the backend)"
    )
    stream = result["stream_first_byte"]
    print(
        f"stream first byte p50: direct {stream['direct']['p50_ms']:.3f} ms, gateway "
        f"{stream['gateway']['p50_ms']:.3f} ms (+{stream['added_p50_ms']:.3f} ms; a bare Envoy "
        f"hop +{stream['envoy_hop_added_p50_ms']:.3f} ms)"
    )
    worst = result["worst_bodies"]
    quiet = worst["small_requests_quiet"]["max_ms"]
    print(
        f"worst bodies at {worst['body_limit_bytes']} bytes (small requests' max quiet: {quiet} ms)"
    )
    for name, body in worst["bodies"].items():
        print(
            f"  {name:<14} read+answer {body['gateway_read_and_answer_ms']:>7.1f} ms; small "
            f"requests' max {body['small_requests_while_sent']['max_ms']:.1f} ms"
        )
    print(
        f"load average (1 min): {result['load_average_1m_at_start']} -> {result['load_average_1m_at_end']}"
    )


if __name__ == "__main__":
    print_table(run())
    print(RESULTS)
    sys.exit(0)
