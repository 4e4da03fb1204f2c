"""Token usage from every answer, streams included: counters per key, tenant, route and
variant on /stats/prometheus and both counts in the audit line, equal to the backend's
`usage`; a stream is asked for its usage without the client seeing the difference, and
keeps streaming."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from .echo_backend import COMPLETION_TOKENS, usage_for
from .records import logged, metric, part
from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy

PROMPT = "envoy_modelfleet_prompt_tokens"
COMPLETION = "envoy_modelfleet_completion_tokens"


def counters(gateway, **labels: str) -> tuple[float, float]:
    text = gateway.envoy.prometheus()
    return metric(text, PROMPT, **labels), metric(text, COMPLETION, **labels)


def sse_events(text: str) -> list[str]:
    return [event.removeprefix("data: ") for event in text.split("\n\n") if event]


def test_answers_are_counted_per_key_tenant_route_and_variant(gateway, fleet):
    labels = {"key_id": "other", "tenant": "globex", "route": "by-model-mid", "variant": "mid"}
    before = counters(gateway, **labels)
    key = bearer(fleet.key("other").key)
    replies = [
        call(gateway.url, CHAT, {"model": "mid", "messages": MESSAGES * n}, key) for n in (1, 2, 3)
    ]
    prompt = sum(r.json()["usage"]["prompt_tokens"] for r in replies)
    assert counters(gateway, **labels) == (before[0] + prompt, before[1] + 3 * COMPLETION_TOKENS)
    usage = replies[2].json()["usage"]
    entry = logged(gateway, replies[2].headers["x-request-id"])
    assert part(
        entry,
        {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "stream_usage": None,
        },
    )


MIB = 1024 * 1024


@pytest.mark.parametrize(
    "mode",
    [
        # Small answers are read whole; the usage is searched in the last 4 KiB first.
        {"pad_bytes": 1000},
        {"pad_after_usage_bytes": 20_000},
        # Larger answers, or of unknown length, are read as they pass, whatever their size:
        # beyond the listener's buffer limit (4 MiB) too.
        {"pad_bytes": 100_000},
        {"pad_bytes": 6 * MIB},
        {"pad_bytes": 6 * MIB, "chunked": True},
        {"pad_bytes": 1000, "chunked": True},
    ],
    ids=lambda mode: "-".join(f"{k}={v}" for k, v in mode.items()),
)
def test_answers_of_any_size_pass_whole_and_are_counted(gateway, fleet, backends, mode):
    backends.set_mode("small", **mode)
    labels = {"key_id": "app", "tenant": "acme", "route": "code", "variant": "small"}
    before = counters(gateway, **labels)
    reply = call(
        gateway.url,
        CHAT,
        {"task_type": "code", "messages": MESSAGES},
        bearer(fleet.key("app").key),
        timeout=30,
    )
    assert reply.status == 200 and reply.complete
    answer = reply.json()
    assert len(answer.get("data", "")) == mode.get("pad_bytes", 0)
    assert len(answer.get("after", "")) == mode.get("pad_after_usage_bytes", 0)
    usage = answer["usage"]
    assert counters(gateway, **labels) == (
        before[0] + usage["prompt_tokens"],
        before[1] + usage["completion_tokens"],
    )
    assert part(
        logged(gateway, reply.headers["x-request-id"]),
        {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": COMPLETION_TOKENS},
    )


def test_a_stream_is_asked_for_usage_and_the_client_sees_no_difference(gateway, fleet, backends):
    labels = {"key_id": "app", "tenant": "acme", "route": "code", "variant": "small"}
    before = counters(gateway, **labels)
    body = {"task_type": "code", "stream": True, "messages": MESSAGES}
    reply = call(gateway.url, CHAT, body, bearer(fleet.key("app").key))
    assert reply.status == 200 and reply.complete
    events = sse_events(reply.text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])
    assert len(events) == 4  # three chunks and [DONE], as the backend sent them
    # The model server was asked for the usage chunk, and counted it.
    seen = backends.last("small")["body"]
    assert json.loads(seen)["stream_options"] == {"include_usage": True}
    usage = usage_for(seen.encode())
    after = counters(gateway, **labels)
    assert after == (before[0] + usage["prompt_tokens"], before[1] + COMPLETION_TOKENS)
    assert part(
        logged(gateway, reply.headers["x-request-id"]),
        {"stream_usage": "injected", "prompt_tokens": usage["prompt_tokens"]},
    )


def test_a_stream_that_asked_for_usage_gets_it_and_it_is_counted(gateway, fleet, backends):
    labels = {"key_id": "app", "tenant": "acme", "route": "code", "variant": "small"}
    before = counters(gateway, **labels)
    body = {
        "task_type": "code",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": MESSAGES,
    }
    reply = call(gateway.url, CHAT, body, bearer(fleet.key("app").key))
    final = json.loads(sse_events(reply.text)[-2])
    assert final["choices"] == [] and final["usage"] == usage_for(json.dumps(body).encode())
    assert backends.last("small")["body"] == json.dumps(body)  # forwarded unchanged
    assert counters(gateway, **labels) == (
        before[0] + final["usage"]["prompt_tokens"],
        before[1] + final["usage"]["completion_tokens"],
    )


def test_a_stream_keeps_streaming(gateway, fleet, backends):
    """Each event reaches the client when the backend sends it, not when the stream ends."""
    backends.set_mode("small", stream_interval_seconds=0.5)
    parts = urlsplit(gateway.url)
    body = json.dumps({"task_type": "code", "stream": True, "messages": MESSAGES}).encode()
    request = (
        f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {fleet.key('app').key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    received = b""
    first_at = None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as client:
        started = time.monotonic()
        client.sendall(request)
        while b"[DONE]" not in received:
            data = client.recv(65536)
            assert data, f"the stream ended early: {received!r}"
            received += data
            if first_at is None and b"data: " in received:
                first_at = time.monotonic() - started
        ended_at = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200")
    # The backend spends 3 x 0.5 s on its three events.
    assert ended_at > 1.4
    assert first_at is not None and first_at < ended_at - 1.0, (first_at, ended_at)


def test_errors_count_no_tokens(gateway, fleet, backends):
    backends.set_mode("small", status=500)
    labels = {"key_id": "app", "tenant": "acme", "route": "code"}
    text = gateway.envoy.prometheus()
    before = [metric(text, PROMPT, **labels, variant=v) for v in ("small", "big")]
    reply = call(
        gateway.url, CHAT, {"task_type": "code", "messages": MESSAGES}, bearer(fleet.key("app").key)
    )
    assert reply.status == 500
    text = gateway.envoy.prometheus()
    assert [metric(text, PROMPT, **labels, variant=v) for v in ("small", "big")] == before
    assert logged(gateway, reply.headers["x-request-id"])["prompt_tokens"] is None
