"""The demo's load: a compressed day of OpenAI requests through the gateway.

Arrivals are Poisson at the phase's rate; prompt and output lengths are drawn from the
Azure LLM inference trace 2023 (data/traces, CC-BY 4.0); task types and keys from the
mixes in `day.py`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from modelfleet_testbed.demo.day import (
    ABUSIVE_KEY,
    BURST_OUTPUT_TOKENS,
    KEY_MIX,
    LOW_PRIORITY,
    TASK_MIX,
    phase_at,
)
from modelfleet_testbed.demo.scenario import KEYS, POOL
from modelfleet_testbed.sim.traces import read_azure

TRACE = Path(__file__).resolve().parents[3] / "data" / "traces" / "azure-llm-2023-conv.csv"
MAX_PROMPT_TOKENS = 1500
MAX_OUTPUT_TOKENS = 200
MAX_IN_FLIGHT = 600
TICK_SECONDS = 0.05


@dataclass
class Outcome:
    sent_at: float  # wall seconds since the load started
    hour: float  # virtual hour of the day when sent
    phase: str
    key_id: str
    task_type: str
    priority: str
    status: int
    latency: float
    served_by: str  # the Deployment that answered, "" if none
    error_code: str = ""  # the OpenAI error's code of a refused call (insufficient_quota...)


class TokenLengths:
    def __init__(self, seed: int):
        trace = read_azure(TRACE)
        self._pairs = list(zip(trace.prompt_tokens, trace.output_tokens, strict=True))
        self._random = random.Random(seed)

    def draw(self) -> tuple[int, int]:
        prompt, output = self._random.choice(self._pairs)
        return min(prompt, MAX_PROMPT_TOKENS), max(1, min(output, MAX_OUTPUT_TOKENS))


class LoadGenerator:
    def __init__(self, url: str, hour_now: Callable[[], float], seed: int = 7):
        self.url = url.rstrip("/") + "/v1/chat/completions"
        self.hour_now = hour_now
        self.outcomes: list[Outcome] = []
        self.in_flight = 0
        self._random = random.Random(seed)
        self._lengths = TokenLengths(seed)
        self._keys = {k["id"]: k["key"] for k in KEYS}
        self._started = time.monotonic()

    def _pick(self, mix: dict[str, float]) -> str:
        return self._random.choices(list(mix), weights=list(mix.values()))[0]

    async def _send(self, session: aiohttp.ClientSession, key_id: str, task: str, priority: str):
        prompt, output = self._lengths.draw()
        if priority == LOW_PRIORITY:
            output = BURST_OUTPUT_TOKENS
        hour = self.hour_now()
        body = {
            "model": POOL,  # every variant serves the pool's name; task_type picks one
            "task_type": task,
            "messages": [{"role": "user", "content": "tok " * prompt}],
            "max_tokens": output,
        }
        headers = {"Authorization": f"Bearer {self._keys[key_id]}"}
        if priority:
            headers["x-priority"] = priority
        sent = time.monotonic()
        status, served, code = 0, "", ""
        self.in_flight += 1
        try:
            async with session.post(self.url, json=body, headers=headers) as response:
                answer = await response.read()
                status = response.status
                served = response.headers.get("x-served-by", "").rsplit("-", 2)[0]
                if status != 200:
                    code = _error_code(answer)
        except (TimeoutError, aiohttp.ClientError):
            status = 0
        finally:
            self.in_flight -= 1
        self.outcomes.append(
            Outcome(
                sent - self._started,
                hour,
                phase_at(hour).name,
                key_id,
                task,
                priority,
                status,
                time.monotonic() - sent,
                served,
                code,
            )
        )

    async def run(self, until: Callable[[], bool]) -> None:
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
        tasks: set[asyncio.Task] = set()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while not until():
                phase = phase_at(self.hour_now())
                for rate, kind in (
                    (phase.requests_per_second, "ordinary"),
                    (phase.low_priority_burst, "burst"),
                    (phase.abusive, "abusive"),
                ):
                    for _ in range(_poisson(self._random, rate * TICK_SECONDS)):
                        if self.in_flight >= MAX_IN_FLIGHT:
                            break
                        if kind == "ordinary":
                            args = (self._pick(KEY_MIX), self._pick(TASK_MIX), "")
                        elif kind == "burst":
                            args = ("fin-risk-app", "legal", LOW_PRIORITY)
                        else:
                            args = (ABUSIVE_KEY, "chat", "")
                        task = asyncio.create_task(self._send(session, *args))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                await asyncio.sleep(TICK_SECONDS)
            if tasks:
                await asyncio.wait(tasks, timeout=60)


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are small (a tick's worth of arrivals).
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
