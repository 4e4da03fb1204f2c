"""The real `modelfleet run` against the local cluster, driven the way a user drives it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import yaml

from tests.e2e.operator_harness import Fleet, eventually

pytestmark = pytest.mark.e2e

# A schedule that opened within the last minute and never closes: active all the time.
ALWAYS = {"name": "always", "start": "* * * * *", "end": "0 0 30 2 *"}


def pool_manifest(name: str = "e2e", budget: int = 64, **small_overrides) -> dict:
    small = {
        "name": "small",
        "model": "org/tiny-7b",
        "gpusPerReplica": 1,
        "priority": 10,
        "startupSeconds": 0,
        "replicas": {"min": 1, "max": 6},
        "schedules": [{**ALWAYS, "replicas": 2}],
        "queue": {
            "targetPerReplica": 4,
            "scaleUp": {"stabilizationSeconds": 0},
            "scaleDown": {"stabilizationSeconds": 6},
        },
        **small_overrides,
    }
    big = {
        "name": "big",
        "model": "org/large-70b",
        "gpusPerReplica": 4,
        "priority": 100,
        "startupSeconds": 0,
        "replicas": {"min": 1, "max": 3},
        "queue": {"targetPerReplica": 8},
    }
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": name, "namespace": "llm"},
        "spec": {
            "gpuBudget": budget,
            "metrics": {"refreshSeconds": 1, "staleAfterSeconds": 10},
            "variants": [small, big],
        },
    }


@pytest.fixture(scope="module")
def fleet():
    # Replicas run 5x faster than the GPU they model, so a burst lasts seconds, not minutes.
    started = Fleet(max_num_seqs=4, speedup=5.0).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def pool(fleet):
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(pool_manifest()))
    return "e2e"


def test_pool_gets_deployments_and_services_with_the_schedule_counts(fleet, pool):
    eventually(lambda: fleet.replicas("e2e-small") == 2, 20, "e2e-small at 2 replicas")
    assert fleet.replicas("e2e-big") == 1
    assert fleet.get("service", "e2e-small") is not None
    eventually(lambda: fleet.ready("e2e-small") == 2, 20, "2 ready replicas")
    status = eventually(lambda: fleet.variant_status(pool, "small").get("reason"), 10, "status")
    assert status == "schedule"
    eventually(
        lambda: fleet.condition("modelpool", pool, "Ready").get("status") == "True", 20, "Ready"
    )
    assert "modelfleet_variant_desired_replicas" in fleet.operator_metrics()


async def _burst(urls: list[str], count: int, max_tokens: int) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> int:
            body = {
                "model": "org/tiny-7b",
                "messages": [{"role": "user", "content": "hello " * 50}],
                "max_tokens": max_tokens,
            }
            url = urls[index % len(urls)] + "/v1/chat/completions"
            async with session.post(url, json=body) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_a_burst_scales_up_within_two_refresh_periods_and_down_after_the_window(fleet, pool):
    eventually(lambda: fleet.ready("e2e-small") == 2, 20, "2 ready replicas")
    urls = fleet.replica_urls("e2e-small")
    started = time.monotonic()
    burst = asyncio.run_coroutine_threadsafe(
        _burst(urls, count=48, max_tokens=500), fleet.background.loop
    )
    eventually(lambda: (fleet.replicas("e2e-small") or 0) > 2, 10, "a scale-up")
    # Two refresh periods (2 s), plus a 1 s scrape and the query, plus slack for 2 cores.
    assert time.monotonic() - started <= 2 * 1 + 1 + 2
    assert fleet.variant_status(pool, "small")["reason"] in ("queue", "max")
    statuses = burst.result(120)
    assert set(statuses) == {200}
    ended = time.monotonic()
    high = fleet.replicas("e2e-small")
    eventually(lambda: fleet.replicas("e2e-small") == 2, 40, "the scale-down after the burst")
    assert time.monotonic() - ended >= 6 - 1, "scaled down before the stabilization window"
    assert high > 2
    assert fleet.events("Scaled"), "no Scaled event was posted"
