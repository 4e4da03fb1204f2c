"""Gateway overhead: a trivial backend called directly vs through the rendered gateway.

The backend is Envoy itself answering a fixed body (so the backend is never the
bottleneck), the load generator is `wrk` (Debian package `wrk`), and both paths run in the
same process lifetime, one after the other, with the same request: a chat completion with
an API key, routed on its JSON body. The gateway does everything it does in production
(key check, per-key rate limit, body parsing, Lua input check, JSON access log to a file).

    python -m bench.gateway      # writes bench/results/gateway.json, prints a table
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.keys import ApiKey
from modelfleet.api.load import load_resources
from modelfleet.apply.files import publish_gateway
from modelfleet.apply.validate import envoy_binary
from modelfleet.plan.routing.planner import plan_routing
from modelfleet.render.envoy.render import render_gateway

RESULTS = Path(__file__).parent / "results" / "gateway.json"
WARMUP_SECONDS = 1
# (name, connections, seconds): one connection shows the added latency per request; several
# show throughput when the gateway is busy.
SCENARIOS = [("one_connection", 1, 3), ("16_connections", 16, 4)]
KEY = ApiKey(id="bench", key="sk-bench-0123456789abcdef", tenant="bench")
BODY = {"task_type": "chat", "messages": [{"role": "user", "content": "Say hello."}]}
ANSWER = '{"id":"bench","object":"chat.completion","choices":[]}'

FLEET = """
apiVersion: modelfleet.io/v1alpha1
kind: ModelPool
metadata: {name: bench, namespace: bench}
spec:
  gpuBudget: 1
  variants:
    - {name: echo, model: bench/echo, gpusPerReplica: 1, replicas: {min: 1, max: 1}}
---
apiVersion: modelfleet.io/v1alpha1
kind: RoutingPolicy
metadata: {name: bench, namespace: bench}
spec:
  pool: bench
  gateway:
    configMap: bench
    apiKeySecret: bench
    rateLimit: {requestsPerMinute: 1000000000}
  routes:
    - name: chat
      match: {taskType: [chat]}
      backends: [{variant: echo, weight: 100}]
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


def backend_bootstrap() -> dict[str, Any]:
    """An Envoy that answers every request with ANSWER: a backend that costs ~nothing."""
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
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "backend",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


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
        socket = status["local_address"]["socket_address"]
        if socket.get("port_value"):
            return f"{socket['address']}:{socket['port_value']}"
    return None


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def render_bench_gateway(config_dir: Path, backend: str, access_log: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fleet_file:
        fleet_file.write(FLEET)
        fleet_file.flush()
        resources = load_resources([fleet_file.name])
    (policy,) = resources.policies
    pool = resources.pool(policy.namespace, policy.spec.pool)
    assert pool is not None
    host, port = backend.rsplit(":", 1)
    table = plan_routing(policy, pool, {})
    files = render_gateway(
        table,
        pool,
        policy,
        [KEY],
        {"echo": (host, int(port))},
        listen=("127.0.0.1", 0),
        admin=("127.0.0.1", 0),
        config_dir=str(config_dir),
        access_log_path=str(access_log),
    )
    publish_gateway(config_dir, files)


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


def run() -> dict[str, Any]:
    """Measure, write bench/results/gateway.json, and return what was written."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-")))
        (work / "backend.yaml").write_text(yaml.safe_dump(backend_bootstrap()))
        backend = start_envoy(stack, work / "backend.yaml", work, "backend")
        config_dir = work / "gateway"
        render_bench_gateway(config_dir, backend, work / "access.log")
        gateway = start_envoy(stack, config_dir / "envoy.yaml", work, "gateway")
        script = work / "request.lua"
        body, auth = json.dumps(json.dumps(BODY)), json.dumps(f"Bearer {KEY.key}")
        script.write_text(WRK_SCRIPT % {"body": body, "auth": auth})
        targets = {
            "direct": f"http://{backend}/v1/chat/completions",
            "gateway": f"http://{gateway}/v1/chat/completions",
        }
        for url in targets.values():
            warm = run_wrk(url, script, 4, WARMUP_SECONDS)
            if warm["errors"] or warm["non_2xx"] or not warm["requests"]:
                raise RuntimeError(f"{url} does not answer 200: {warm}")
        scenarios = {}
        for name, connections, seconds in SCENARIOS:
            measured = {
                path: run_wrk(url, script, connections, seconds) for path, url in targets.items()
            }
            scenarios[name] = {
                "connections": connections,
                "seconds": seconds,
                **measured,
                "gateway_vs_direct": compare(measured["direct"], measured["gateway"]),
            }
    result = {
        "benchmark": "gateway",
        "what": "POST /v1/chat/completions with an API key, routed on the body's task_type; "
        "backend: Envoy answering a fixed body; load: wrk, 1 thread; each Envoy 1 worker",
        "envoy": subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True)
        .stdout.strip()
        .split("version: ")[-1],
        "cpus": os.cpu_count(),
        # Other work on the machine skews both paths; this says how busy it was.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "scenarios": scenarios,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(result: dict[str, Any]) -> None:
    row = "{:<16} {:<8} {:>9} {:>8} {:>8}"
    print(row.format("scenario", "path", "req/s", "p50 ms", "p99 ms"))
    for name, scenario in result["scenarios"].items():
        for path in ("direct", "gateway"):
            m = scenario[path]
            rps, p50, p99 = m["requests_per_second"], m["p50_ms"], m["p99_ms"]
            print(row.format(name, path, f"{rps:.0f}", f"{p50:.3f}", f"{p99:.3f}"))
        ratio = scenario["gateway_vs_direct"]
        rps, p50, p99 = ratio["requests_per_second"], ratio["p50"], ratio["p99"]
        print(row.format("", "ratio", f"{rps:.3f}", f"{p50:.3f}", f"{p99:.3f}"))


if __name__ == "__main__":
    print_table(run())
    print(RESULTS)
    sys.exit(0)
