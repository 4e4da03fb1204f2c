"""Fallback on failure: a request whose first choice answers 5xx, refuses the connection or
sends no byte in time is retried once on the route's fallback; never after bytes reached
the client; within a retry budget; and a client cannot ask for more."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import aiohttp
import pytest

from modelfleet.api.routingpolicy import RoutingPolicy

from .records import logged, part, total
from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy

CHAT_BODY = {"task_type": "chat", "messages": MESSAGES}


def policy_with(fleet, route: str, weights: dict[str, int], **changes) -> RoutingPolicy:
    """The fleet's policy with `route` sent to `weights`, its declared fallback and the
    gateway's fallback settings from `changes`."""
    data = fleet.with_weights(route, weights).to_wire()
    spec = next(r for r in data["spec"]["routes"] if r["name"] == route)
    if "fallback" in changes:
        spec["fallback"] = changes.pop("fallback")
    data["spec"]["gateway"]["fallback"] = changes
    return RoutingPolicy.model_validate(data)


def test_a_5xx_variant_falls_back_once(gateway, fleet, backends):
    backends.set_mode("big", status=503)
    before = gateway.envoy.prometheus()
    key = bearer(fleet.key("app").key)
    replies = [call(gateway.url, CHAT, CHAT_BODY, key) for _ in range(40)]
    assert Counter(r.status for r in replies) == {200: 40}
    assert "big" not in {r.variant for r in replies}
    hits = backends.hits()
    # split is big 70 / mid 20 / small 10; big's requests were each tried on big once, then
    # on mid, its fallback (the route's heaviest other backend).
    assert hits["big"] > 10
    assert hits["mid"] + hits["small"] == 40
    retried = next(r for r in replies if r.variant == "mid" and hits["big"])
    entry = logged(gateway, retried.headers["x-request-id"])
    after = gateway.envoy.prometheus()
    retries = total(after, "envoy_cluster_upstream_rq_retry", envoy_cluster_name="big") - total(
        before, "envoy_cluster_upstream_rq_retry", envoy_cluster_name="big"
    )
    assert retries == hits["big"]
    retried_entries = [
        logged(gateway, r.headers["x-request-id"])
        for r in replies
        if logged(gateway, r.headers["x-request-id"])["attempts"] == 2
    ]
    assert len(retried_entries) == hits["big"]
    assert part(retried_entries[0], {"cluster": "big.fallback-mid", "variant": "mid"})
    assert entry["status"] == 200


def test_a_refused_connection_falls_back(live_gateway, fleet, backends):
    backends.reset()
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    live_gateway.apply(backends={"big": ("127.0.0.1", closed)})
    key = bearer(fleet.key("app").key)
    replies = [call(live_gateway.url, CHAT, CHAT_BODY, key) for _ in range(20)]
    assert Counter(r.status for r in replies) == {200: 20}
    assert {r.variant for r in replies} <= {"mid", "small"}


def test_no_first_byte_in_time_falls_back_and_a_merely_slow_answer_still_wins(
    live_gateway, fleet, backends
):
    backends.reset()
    live_gateway.apply(
        policy_with(fleet, "flip", {"big": 100}, fallback="mid", firstByteSeconds=0.5)
    )
    key = bearer(fleet.key("app").key)
    body = {"task_type": "flip", "messages": MESSAGES}
    backends.set_mode("big", delay_seconds=30)  # hangs
    started = time.monotonic()
    reply = call(live_gateway.url, CHAT, body, key)
    assert (reply.status, reply.variant) == (200, "mid")
    assert time.monotonic() - started < 5
    # After the per-try timeout the first attempt keeps running beside the retry: when it
    # answers first, its answer is the one the client gets.
    backends.set_mode("big", delay_seconds=1.0)
    backends.set_mode("mid", delay_seconds=4.0)
    started = time.monotonic()
    reply = call(live_gateway.url, CHAT, body, key)
    assert (reply.status, reply.variant) == (200, "big")
    assert time.monotonic() - started < 3.5


def test_nothing_is_retried_after_bytes_reached_the_client(gateway, fleet, backends):
    backends.set_mode("small", break_stream=True)
    key = bearer(fleet.key("app").key)
    body = {"task_type": "code", "stream": True, "messages": MESSAGES}
    reply = call(gateway.url, CHAT, body, key)
    # The client got the first event, then the stream broke; no second attempt anywhere.
    assert reply.status == 200
    assert not reply.complete
    assert reply.text.startswith("data: ")
    assert "[DONE]" not in reply.text
    assert backends.hits() == {"big": 0, "mid": 0, "small": 1}


def test_a_client_cannot_raise_its_retries(gateway, fleet, backends):
    backends.set_mode("small", status=503)
    key = bearer(fleet.key("app").key)
    extra = {
        "x-envoy-max-retries": "5",
        "x-envoy-retry-on": "5xx",
        "x-envoy-upstream-rq-timeout-ms": "1",
    }
    reply = call(gateway.url, CHAT, {"task_type": "code", "messages": MESSAGES}, {**key, **extra})
    # code has one backend and no declared fallback: one retry on the same variant.
    assert reply.status == 503
    assert reply.json()["error"]["type"] == "server_error"
    assert backends.hits()["small"] == 2


def test_retries_stay_within_the_budget(live_gateway, fleet, backends):
    """A broken variant under load: retries in flight may be 20% of the requests in flight,
    so most failures go back to the client instead of doubling the fallback's load."""
    backends.reset()
    live_gateway.apply(
        policy_with(
            fleet,
            "flip",
            {"big": 100},
            fallback="mid",
            retryBudgetPercent=20,
            minRetryConcurrency=1,
        )
    )
    backends.set_mode("big", status=503, delay_seconds=0.2)
    backends.set_mode("mid", delay_seconds=1.0)
    before = live_gateway.envoy.prometheus()
    statuses = asyncio.run(
        burst(
            live_gateway.url,
            {"task_type": "flip", "messages": MESSAGES},
            bearer(fleet.key("app").key),
            60,
        )
    )
    after = live_gateway.envoy.prometheus()

    def grew(name: str) -> float:
        labels = {"envoy_cluster_name": "big", "fallback": "mid"}
        return total(after, name, **labels) - total(before, name, **labels)

    retried, refused = (
        grew("envoy_cluster_upstream_rq_retry"),
        grew("envoy_cluster_upstream_rq_retry_overflow"),
    )
    hits = backends.hits()
    assert hits["big"] == 60
    assert retried + refused == 60
    assert refused > 0, "the budget never refused a retry"
    assert hits["mid"] == retried < 60
    assert Counter(statuses) == {200: retried, 503: refused}


async def burst(url: str, body: dict, headers: dict, count: int) -> list[int]:
    """`count` requests at once, each on its own connection."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def one() -> int:
            async with session.post(url + CHAT, json=body, headers=headers) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(count))))
