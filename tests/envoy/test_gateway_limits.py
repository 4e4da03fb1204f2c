"""The gateway's limits through the real Envoy: client and route timeouts, the connection
cap, every reply Envoy makes itself as OpenAI error JSON (HTTP/1.0 is served), and the
read-only stats listener in front of a loopback-only admin."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from modelfleet.api.routingpolicy import RoutingPolicy

from .fleet import Gateway
from .processes import http_get, http_send
from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy


def policy_with(fleet, gateway: dict | None = None, **route_changes: dict) -> RoutingPolicy:
    data = fleet.policy.to_wire()
    data["spec"]["gateway"].update(gateway or {})
    for route in data["spec"]["routes"]:
        route.update(route_changes.get(route["name"], {}))
    return RoutingPolicy.model_validate(data)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 0


def exchange(url: str, data: bytes, wait: float = 10) -> tuple[bytes, float]:
    """Send raw bytes, read until the gateway closes the connection (or `wait` passes):
    what came back and after how long."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(address(url), timeout=wait) as client:
        client.sendall(data)
        try:
            while chunk := client.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received, time.monotonic() - started


def error_of(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    # A close-delimited or content-length body: the JSON is all of it.
    return status, json.loads(body)["error"]


# -- timeouts ---------------------------------------------------------------------------------


def test_a_client_trickling_headers_is_cut_off(live_gateway, fleet):
    live_gateway.apply(policy_with(fleet, {"timeouts": {"requestHeadersSeconds": 1}}))
    start = f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\nx-slow: ".encode()
    started = time.monotonic()
    with socket.create_connection(address(live_gateway.url), timeout=10) as client:
        client.sendall(start)
        received = b""
        try:
            for _ in range(20):  # one byte a second would keep it open for 20 s
                client.sendall(b"a")
                time.sleep(0.5)
                client.setblocking(False)
                try:
                    received += client.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    client.setblocking(True)
                if received:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert time.monotonic() - started < 5
    if received:  # Envoy says why before it closes
        status, error = error_of(received)
        assert (status, error["code"]) == (408, "request_timeout")


def test_a_stalled_request_body_gets_408(live_gateway, fleet):
    live_gateway.apply(policy_with(fleet, {"timeouts": {"streamIdleSeconds": 1}}))
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {fleet.key('app').key}\r\n"
        "content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    ).encode()
    received, took = exchange(live_gateway.url, head + b'{"model":', wait=10)
    assert took < 5
    status, error = error_of(received)
    assert (status, error["code"]) == (408, "request_timeout")


def test_a_route_times_out_after_its_slo(live_gateway, fleet, backends):
    backends.reset()
    live_gateway.apply(policy_with(fleet, code={"slo": {"e2eSeconds": 1}}))
    backends.set_mode("small", delay_seconds=4)
    started = time.monotonic()
    reply = call(
        live_gateway.url,
        CHAT,
        {"task_type": "code", "messages": MESSAGES},
        bearer(fleet.key("app").key),
    )
    assert time.monotonic() - started < 3
    assert reply.status == 504
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_unavailable")
    assert "timeout" in error["message"]


# -- Envoy's own replies ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["", "host: gw\r\n"])
def test_http_1_0_is_served(gateway, fleet, host):
    body = json.dumps({"model": "mid", "messages": MESSAGES}).encode()
    request = (
        f"POST {CHAT} HTTP/1.0\r\n{host}authorization: Bearer {fleet.key('app').key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    received, _ = exchange(gateway.url, request)
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    assert json.loads(answer)["variant"] == "mid"


def test_headers_too_large_get_431_json(gateway):
    request = f"GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: {'a' * 70_000}\r\n\r\n".encode()
    status, error = error_of(exchange(gateway.url, request)[0])
    assert (status, error["code"]) == (431, "request_headers_too_large")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nbad header line\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["header-without-colon", "bad-content-length", "no-request-line"],
)
def test_malformed_http_gets_400_json(gateway, request_bytes):
    status, error = error_of(exchange(gateway.url, request_bytes)[0])
    assert (status, error["type"], error["code"]) == (400, "invalid_request_error", "bad_request")


# -- the connection cap and the stats listener ---------------------------------------------------


@pytest.fixture
def capped_gateway(tmp_path, fleet, backends):
    gateway = Gateway(fleet, backends, tmp_path / "config", tmp_path / "access.log")
    gateway.apply(policy_with(fleet, {"limits": {"maxConnections": 3}}))
    try:
        yield gateway
    finally:
        gateway.stop()


def test_connections_past_the_cap_are_closed_and_probes_still_answer(capped_gateway, fleet):
    gateway = capped_gateway
    held = [socket.create_connection(address(gateway.url), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)  # Envoy has accepted them
        received, took = exchange(gateway.url, b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n\r\n", 5)
        assert received == b"" and took < 2, "a fourth connection was served"
        assert http_get(f"{gateway.envoy.stats_url}/ready").strip() == "LIVE"
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.3)
    assert call(gateway.url, "/v1/models", headers=bearer(fleet.key("app").key)).status == 200
    overflow = "envoy_listener_downstream_global_cx_overflow"
    assert overflow in gateway.envoy.prometheus()
    # A cap is configured, so Envoy does not warn about having none.
    assert "no configured limit" not in gateway.envoy.log_path.read_text()


def test_the_stats_listener_serves_only_metrics_and_readiness(gateway):
    stats = gateway.envoy.stats_url
    assert http_get(f"{stats}/ready").strip() == "LIVE"
    assert "envoy_cluster_upstream_rq_completed" in http_get(f"{stats}/stats/prometheus")
    for path, method in [
        ("/quitquitquit", "POST"),
        ("/healthcheck/fail", "POST"),
        ("/logging?level=debug", "POST"),
        ("/config_dump", "GET"),
        ("/stats/prometheus", "POST"),
        ("/stats/prometheus/../../config_dump", "GET"),
    ]:
        with pytest.raises(Exception) as refused:
            http_send(f"{stats}{path}", method)
        assert getattr(refused.value, "code", None) == 404, (path, method)
    # Envoy is still up and healthy.
    assert http_get(f"{stats}/ready").strip() == "LIVE"
