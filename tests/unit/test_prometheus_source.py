"""Observations from a Prometheus HTTP API on 127.0.0.1: good answers, garbage, slowness."""

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from modelfleet.observe.prometheus import MetricsUnavailable, PrometheusSource

SAMPLED = 1_795_000_000.0


def vector(query: str) -> list[dict]:
    if "timestamp(" in query:
        return [{"metric": {"variant": "a"}, "value": [SAMPLED, str(SAMPLED)]}]
    if "num_requests_waiting" in query:
        return [
            {"metric": {"variant": "a"}, "value": [SAMPLED, "7"]},
            {"metric": {"variant": "b"}, "value": [SAMPLED, "NaN"]},
        ]
    if "num_requests_running" in query:
        return [{"metric": {"variant": "a"}, "value": [SAMPLED, "3"]}]
    return []


class FakePrometheus(BaseHTTPRequestHandler):
    mode = "good"

    def do_GET(self):  # noqa: N802 (http.server's name)
        query = parse_qs(urlparse(self.path).query).get("query", [""])[0]
        if self.mode == "slow":
            time.sleep(2)
        if self.mode == "garbage":
            body = b"<html>502 bad gateway</html>"
        elif self.mode == "wrong-shape":
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"nope": 1}]}}
            ).encode()
        else:
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": vector(query)}}
            ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_good_answer_becomes_observations_with_their_sample_time(prometheus):
    FakePrometheus.mode = "good"
    observations = asyncio.run(PrometheusSource(url(prometheus)).observe_pool("ns", "p"))
    a = observations["ns/p/a"]
    assert (a.waiting, a.running) == (7.0, 3.0)
    assert a.sampled_at == datetime.fromtimestamp(SAMPLED, UTC)
    assert "ns/p/b" not in observations  # NaN is no sample


@pytest.mark.parametrize(
    ("mode", "message"),
    [("garbage", "failed"), ("wrong-shape", "malformed sample"), ("slow", "failed|timed out")],
)
def test_garbage_and_slowness_are_reported_not_believed(prometheus, mode, message):
    FakePrometheus.mode = mode
    source = PrometheusSource(url(prometheus), timeout_seconds=0.5)
    with pytest.raises(MetricsUnavailable, match=message):
        asyncio.run(source.observe_pool("ns", "p"))


def test_nobody_listening_is_reported():
    source = PrometheusSource("http://127.0.0.1:9", timeout_seconds=0.5)
    with pytest.raises(MetricsUnavailable, match="127.0.0.1:9"):
        asyncio.run(source.observe_pool("ns", "p"))


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (float("inf"), "answered +inf for waiting"),
        (float("-inf"), "answered -inf for waiting"),
        (-3.0, "a negative waiting"),
        (1e300, "an implausible waiting"),
    ],
)
def test_a_lying_sample_is_no_sample_with_its_reason(value, said):
    from modelfleet.observe.prometheus import observations_from_results

    results = {"waiting": {"a": value}, "running": {"a": 2.0}, "sampled_at": {"a": SAMPLED}}
    (observation,) = observations_from_results("llm", "chat", results).values()
    assert observation.waiting is None and observation.running == 2.0
    assert said in observation.problem


def test_an_infinite_sample_time_is_no_sample_time():
    from modelfleet.observe.prometheus import observations_from_results

    results = {"waiting": {"a": 1.0}, "sampled_at": {"a": float("inf")}}
    (observation,) = observations_from_results("llm", "chat", results).values()
    assert observation.sampled_at is None and "sampled_at" in observation.problem
