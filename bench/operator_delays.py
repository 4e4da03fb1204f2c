"""How fast the running operator reacts, measured on the local fleet (real `modelfleet run`,
real Prometheus, real Envoy and gateway-sync, simulated vLLM replicas):

- queue spike -> Deployment: from the first request of a burst at the replicas to the
  Deployment's new `spec.replicas` (refreshSeconds 1, Prometheus scraping every 1 s);
- weight change -> Envoy: from `kubectl patch` of a RoutingPolicy's weights to the gateway
  answering every request from the new backend, split into the operator's part (status
  shows the new config hash) and the delivery (sidecar watch + Envoy reload).

Run: `python -m bench.operator_delays` (or through `make bench`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from modelfleet_testbed.local.fleet import LocalFleet, eventually
from modelfleet_testbed.local.processes import free_port
from modelfleet_testbed.local.traffic import chat_burst, served_by

RESULTS = Path(__file__).parent / "results" / "operator_delays.json"
TRIALS = 3
API_KEY = "sk-bench-0123456789"

POOL = {
    "apiVersion": "modelfleet.io/v1alpha1",
    "kind": "ModelPool",
    "metadata": {"name": "bench", "namespace": "llm"},
    "spec": {
        "gpuBudget": 32,
        "metrics": {"refreshSeconds": 1, "staleAfterSeconds": 10},
        "variants": [
            {
                "name": name,
                "model": f"org/{name}-7b",
                "gpusPerReplica": 1,
                "startupSeconds": 0,
                "replicas": {"min": 2, "max": 6},
                "queue": {"targetPerReplica": 4, "scaleDown": {"stabilizationSeconds": 2}},
            }
            for name in ("blue", "green")
        ],
    },
}


def policy(listen: int, blue: int, green: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "bench-gw", "namespace": "llm"},
        "spec": {
            "pool": "bench",
            # One gateway pod (the operator's, run by the node agent) on the listener port.
            "gateway": {
                "configMap": "bench-gw",
                "listenerPort": listen,
                "apiKeySecret": "keys",
                "replicas": 1,
            },
            "routes": [
                {
                    "name": "chat",
                    "backends": [
                        {"variant": "blue", "weight": blue},
                        {"variant": "green", "weight": green},
                    ],
                }
            ],
        },
    }


def _apply(fleet: LocalFleet, *objects: dict[str, Any]) -> None:
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))


def queue_spike_delays(fleet: LocalFleet) -> list[float]:
    delays = []
    for _ in range(TRIALS):
        eventually(lambda: fleet.replicas("bench-blue") == 2, 60, "blue back at 2")
        eventually(lambda: fleet.ready("bench-blue") == 2, 30, "blue ready")
        urls = fleet.replica_urls("bench-blue")
        started = time.monotonic()
        burst = asyncio.run_coroutine_threadsafe(
            chat_burst(urls, "org/blue-7b", count=40, max_tokens=400), fleet.background.loop
        )
        eventually(lambda: (fleet.replicas("bench-blue") or 0) > 2, 30, "a scale-up", 0.05)
        delays.append(time.monotonic() - started)
        burst.result(120)
    return delays


def weight_change_delays(fleet: LocalFleet) -> dict[str, list[float]]:
    listen = free_port()
    keys = {"keys": [{"id": "bench", "key": API_KEY, "tenant": "bench"}]}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "keys", "namespace": "llm"},
        "data": {"keys.yaml": base64.b64encode(yaml.safe_dump(keys).encode()).decode()},
    }
    _apply(fleet, secret, policy(listen, 100, 0))
    fleet.gateway_url("bench-gw")
    eventually(
        lambda: fleet.condition("routingpolicy", "bench-gw", "Ready").get("status") == "True",
        30,
        "the gateway published and running",
    )
    url = f"http://127.0.0.1:{listen}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    def all_served_by(deployment: str) -> bool:
        return set(asyncio.run(served_by(url, 5, headers, body))) == {deployment}

    eventually(lambda: all_served_by("bench-blue"), 30, "blue serving")
    operator_part, total = [], []
    for trial in range(TRIALS):
        target = "green" if trial % 2 == 0 else "blue"
        before = fleet.get("routingpolicy", "bench-gw")["status"]["configHash"]
        started = time.monotonic()
        weights = (0, 100) if target == "green" else (100, 0)
        _apply(fleet, policy(listen, *weights))
        eventually(
            lambda b=before: fleet.get("routingpolicy", "bench-gw")["status"]["configHash"] != b,
            30,
            "the new config published",
            0.02,
        )
        operator_part.append(time.monotonic() - started)
        eventually(lambda t=target: all_served_by(f"bench-{t}"), 30, "the new weights", 0.01)
        total.append(time.monotonic() - started)
    return {"operator_seconds": operator_part, "total_seconds": total}


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "trials": [round(v, 3) for v in values],
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def run() -> dict[str, Any]:
    fleet = LocalFleet(max_num_seqs=4, speedup=5.0).start()
    try:
        _apply(fleet, POOL)
        spikes = queue_spike_delays(fleet)
        weights = weight_change_delays(fleet)
    finally:
        fleet.stop()
    delivery = [
        t - o for t, o in zip(weights["total_seconds"], weights["operator_seconds"], strict=True)
    ]
    result = {
        "benchmark": "operator_delays",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {"refreshSeconds": 1, "prometheusScrapeSeconds": 1, "trials": TRIALS},
        "queue_spike_to_deployment_seconds": _summary(spikes),
        "weight_change_to_status_seconds": _summary(weights["operator_seconds"]),
        "status_to_envoy_serving_seconds": _summary(delivery),
        "weight_change_to_envoy_serving_seconds": _summary(weights["total_seconds"]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
