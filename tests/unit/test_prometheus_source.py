"""Observations from a Prometheus HTTP API on 127.0.0.1: good answers, garbage, slowness."""

import asyncio
import json
import math
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from modelfleet.api.modelpool import ModelPool
from modelfleet.observe.prometheus import (
    HistoryWindow,
    MetricsUnavailable,
    PrometheusSource,
    history_windows,
)

SAMPLED = 1_795_000_000.0


def vector(query: str) -> list[dict]:
    if "time_to_first_token" in query:
        return [{"metric": {"variant": "a"}, "value": [SAMPLED, "0.42"]}]
    if "request_queue_time" in query:
        return [{"metric": {"variant": "a"}, "value": [SAMPLED, "+Inf"]}]
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
    looked_back: list[str] = []

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
        elif " offset " in query:  # a look-back subquery: a range vector
            FakePrometheus.looked_back.append(query)
            day_ago = SAMPLED - 86400
            values = [[day_ago + 30 * k, str(2.0 + k)] for k in range(3)] + [[day_ago + 90, "NaN"]]
            result = [{"metric": {"variant": "a"}, "values": values}]
            body = json.dumps(
                {"status": "success", "data": {"resultType": "matrix", "result": result}}
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


def test_latency_p99s_and_the_demand_history_are_read(prometheus):
    FakePrometheus.mode = "good"
    FakePrometheus.looked_back.clear()
    window = HistoryWindow(period_seconds=86700, span_seconds=1530, step_seconds=30)
    source = PrometheusSource(url(prometheus))
    observations = asyncio.run(source.observe_pool("ns", "p", [window]))
    a = observations["ns/p/a"]
    assert a.p99_ttft_seconds == 0.42
    assert a.p99_queue_seconds == math.inf  # the planner treats it as unknown
    assert [(s.at.timestamp(), s.rate) for s in a.demand_history] == [
        (SAMPLED - 86400 + 30 * k, 2.0 + k) for k in range(3)
    ]  # NaN is no sample
    (query,) = FakePrometheus.looked_back
    assert query.endswith("[1530s:30s] offset 85170s")
    assert 'rate(vllm:request_success_total{namespace="ns",pool="p"}[1m])' in query


def test_history_windows_cover_each_look_back_with_the_longest_lead():
    pool = ModelPool.model_validate(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "gpuBudget": 10,
                "metrics": {"refreshSeconds": 30},
                "variants": [
                    {
                        "name": "a",
                        "model": "m/a",
                        "gpusPerReplica": 1,
                        "startupSeconds": 900,
                        "replicas": {"min": 0, "max": 2},
                        "forecast": {},
                    },
                    {
                        "name": "b",
                        "model": "m/b",
                        "gpusPerReplica": 1,
                        "startupSeconds": 60,
                        "replicas": {"min": 0, "max": 2},
                        "forecast": {"lookbackSeconds": [86400], "leadSeconds": 1200},
                    },
                    {
                        "name": "c",
                        "model": "m/c",
                        "gpusPerReplica": 1,
                        "replicas": {"min": 0, "max": 2},
                    },
                ],
            },
        }
    )
    # The last five minutes, and each look-back from five minutes before it to five
    # minutes after the longest lead time (the forecast averages over five minutes).
    assert history_windows(pool) == [
        HistoryWindow(300, 300, 30),
        HistoryWindow(86400 + 300, 1200 + 600, 30),
        HistoryWindow(604800 + 300, 930 + 600, 30),
    ]
    # On a clock running 60 times faster, Prometheus's seconds are a sixtieth.
    assert history_windows(pool, lambda s: s / 60)[1] == HistoryWindow(1445, 30, 0.5)
    # Without a forecast, the last five minutes alone (the slo signal's demand).
    no_forecast = pool.spec.model_copy(update={"variants": pool.spec.variants[2:]})
    assert history_windows(pool.model_copy(update={"spec": no_forecast})) == [
        HistoryWindow(300, 300, 30)
    ]
