"""Shared inputs and closed forms for the simulate tests."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from pathlib import Path

from modelfleet_testbed.sim.gpu import GpuProfile

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "simulate"
MINI_FLEET = GOLDEN / "fleet.yaml"
SMALL_TRACE = GOLDEN / "small-trace.csv"


def linear_prefill_profile(seconds_per_token: float) -> GpuProfile:
    """A test-only speed model: a step costs `seconds_per_token` per prompt token and
    nothing else, so a request with one output token is served in exactly
    prompt_tokens x seconds_per_token (given a token budget that fits the prompt)."""
    return GpuProfile(
        name="linear-prefill-test",
        model="test",
        params_billions=1,
        gpu_type="test",
        gpus=1,
        fixed_step_seconds=0.0,
        kv_read_seconds_per_token=0.0,
        matmul_flops_per_token=seconds_per_token,
        attention_flops_per_token_pair=0.0,
        peak_flops=1.0,
        kv_cache_tokens=10**9,
        default_max_num_seqs=1,
        default_max_num_batched_tokens=8192,
    )


def erlang_c_wait(servers: int, arrival_rate: float, service_rate: float) -> float:
    """Mean waiting time in queue of M/M/c (Erlang C)."""
    load = arrival_rate / service_rate
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    below = sum(load**k / math.factorial(k) for k in range(servers))
    return top / (below + top) / (servers * service_rate - arrival_rate)


def fifo_waits(arrivals: Sequence[float], services: Sequence[float], servers: int) -> list[float]:
    """Kiefer-Wolfowitz: waits of a first-come-first-served queue with `servers` servers."""
    free = [0.0] * servers
    waits = []
    for arrived, service in zip(arrivals, services, strict=True):
        start = max(heapq.heappop(free), arrived)
        waits.append(start - arrived)
        heapq.heappush(free, start + service)
    return waits
