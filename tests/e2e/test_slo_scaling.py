"""The real `modelfleet run` scales a variant on its route's latency SLO, from the p99 that
Prometheus computes over the simulated replicas' vLLM histograms."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import yaml

from tests.e2e.operator_harness import Fleet, eventually

pytestmark = pytest.mark.e2e

TTFT_SLO = 0.25  # seconds; a lone short prompt takes a few milliseconds on the replica


def manifests() -> list[dict]:
    pool = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "slo", "namespace": "llm"},
        "spec": {
            "gpuBudget": 8,
            "metrics": {"refreshSeconds": 1, "staleAfterSeconds": 10},
            "variants": [
                {
                    "name": "small",
                    "model": "org/tiny-7b",
                    "gpusPerReplica": 1,
                    "startupSeconds": 0,
                    "replicas": {"min": 1, "max": 4},
                    # The look-back queries run against the real Prometheus too (no history
                    # yet: no opinion).
                    "forecast": {},
                }
            ],
        },
    }
    policy = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "slo-gw", "namespace": "llm"},
        "spec": {
            "pool": "slo",
            "gateway": {"configMap": "slo-gateway", "apiKeySecret": "slo-keys"},
            "routes": [
                {
                    "name": "chat",
                    "match": {"taskType": ["chat"]},
                    "backends": [{"variant": "small", "weight": 100}],
                    "slo": {"ttftSeconds": TTFT_SLO},
                }
            ],
        },
    }
    return [pool, policy]


@pytest.fixture(scope="module")
def fleet():
    # 4 sequences per replica, 5x faster than the GPU it models: 16 clients queue up.
    started = Fleet(max_num_seqs=4, speedup=5.0).start()
    try:
        yield started
    finally:
        started.stop()


async def _keep_busy(urls: list[str], clients: int, stop: asyncio.Event) -> int:
    """`clients` clients, each sending the next request as soon as the last one is done."""
    body = {
        "model": "org/tiny-7b",
        "messages": [{"role": "user", "content": "hello " * 50}],
        "max_tokens": 60,
    }
    served = 0
    async with aiohttp.ClientSession() as session:

        async def client(index: int) -> None:
            nonlocal served
            url = urls[index % len(urls)] + "/v1/chat/completions"
            while not stop.is_set():
                async with session.post(url, json=body) as response:
                    await response.read()
                    served += response.status == 200

        await asyncio.gather(*(client(i) for i in range(clients)))
    return served


def test_the_operator_scales_on_the_p99_time_to_first_token(fleet):
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(manifests()))
    eventually(lambda: fleet.ready("slo-small") == 1, 30, "one ready replica")
    urls = fleet.replica_urls("slo-small")
    stop = asyncio.Event()
    load = asyncio.run_coroutine_threadsafe(_keep_busy(urls, 16, stop), fleet.background.loop)
    try:
        # Requests queue behind the 4 running ones: p99 TTFT climbs past the SLO in
        # Prometheus, the slo signal asks for more replicas than are ready.
        status = eventually(
            lambda: (
                (v := fleet.variant_status("slo", "small")).get("reason") == "slo"
                and v.get("desiredReplicas", 0) > 1
                and v
            ),
            90,
            "a scale-up by the slo signal",
            0.5,
        )
        eventually(lambda: (fleet.replicas("slo-small") or 0) > 1, 10, "the Deployment scaled")
    finally:
        fleet.background.loop.call_soon_threadsafe(stop.set)
    assert load.result(60) > 100
    slo = next(s for s in status["signals"] if s["reason"] == "slo")
    assert "p99 TTFT" in slo["detail"], slo
    assert status["observed"]["p99TtftSeconds"] > TTFT_SLO
    # What the replicas served at that latency is the capacity's memory, in the status.
    assert status["capacity"]["points"], status["capacity"]
    # The forecast's look-back subqueries are valid PromQL: the metrics stay available.
    available = fleet.condition("modelpool", "slo", "MetricsAvailable")
    assert available["status"] == "True", available
