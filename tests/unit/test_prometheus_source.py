"""Observations from a Prometheus HTTP API on 127.0.0.1: good answers, garbage, refusals,
slowness, and what the client sends (credentials, headers, all queries at once)."""

import asyncio
import json
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
    PoolQueries,
    PrometheusAuth,
    PrometheusSource,
    UsageQueries,
    by_variant,
    history_windows,
    usage_from_results,
)
from modelfleet.observe.usage import Usage, UsageKey

SAMPLED = 1_795_000_000.0
SECRET_ERROR_TEXT = "parse error near <script>leak-me</script>"


def vector(query: str) -> list[dict]:
    if "envoy_modelfleet_" in query:
        labels = {"tenant": "acme", "key_id": "app", "variant": "a"}
        value = {"requests": "3", "prompt_tokens": "120", "completion_tokens": "45"}
        name = query.split("envoy_modelfleet_")[1].split("{")[0]
        return [{"metric": labels, "value": [SAMPLED, value[name]]}]
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
    seen: list[dict] = []
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        parsed = urlparse(self.path)
        params = parse_qs(parsed.query)
        query = params.get("query", [""])[0]
        FakePrometheus.seen.append(
            {
                "path": parsed.path,
                "params": params,
                "headers": dict(self.headers),
                "at": time.time(),
            }
        )
        status = 200
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "garbage":
            body = b"<html>502 bad gateway, secret=hunter2</html>"
        elif self.mode == "unauthorized":
            status, body = 401, b"Unauthorized"
        elif self.mode == "refused":
            status = 400
            body = json.dumps(
                {"status": "error", "errorType": "bad_data", "error": SECRET_ERROR_TEXT}
            ).encode()
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
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    FakePrometheus.seen = []
    FakePrometheus.mode = "good"
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus, bind_and_activate=False)
    # A pool's queries arrive at once: past the default backlog of 5 a connection would wait
    # for a SYN retransmit (1 s) and the timing assertions would measure that.
    server.request_queue_size = 64
    server.server_bind()
    server.server_activate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_good_answer_becomes_observations_with_their_sample_time(prometheus):
    observations = asyncio.run(PrometheusSource(url(prometheus)).observe_pool("ns", "p"))
    a = observations["ns/p/a"]
    assert (a.waiting, a.running) == (7.0, 3.0)
    assert a.sampled_at == datetime.fromtimestamp(SAMPLED, UTC)
    assert "ns/p/b" not in observations  # NaN is no sample
    asked = {call["params"]["query"][0] for call in FakePrometheus.seen}
    assert asked == set(PoolQueries("ns", "p").all().values())
    assert {call["path"] for call in FakePrometheus.seen} == {"/api/v1/query"}
    # Prometheus is told how long the operator waits, so it stops evaluating after that.
    assert {call["params"]["timeout"][0] for call in FakePrometheus.seen} == {"10"}


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage", "answered HTTP 200 with no Prometheus API response"),
        ("wrong-shape", "malformed sample in answer to 'waiting'"),
        ("unauthorized", "refused the credentials .HTTP 401.: check spec.metrics.auth"),
        ("refused", r"refused '\w+' \(HTTP 400, bad_data\)"),
    ],
)
def test_garbage_and_refusals_are_reported_without_quoting_the_answer(prometheus, mode, message):
    FakePrometheus.mode = mode
    with pytest.raises(MetricsUnavailable, match=message) as raised:
        asyncio.run(PrometheusSource(url(prometheus)).observe_pool("ns", "p"))
    text = str(raised.value)
    assert url(prometheus) in text
    for leaked in ("hunter2", "<html>", "leak-me", "Unauthorized"):
        assert leaked not in text


def test_a_pool_s_queries_run_at_once_under_one_deadline(prometheus):
    FakePrometheus.mode = "slow"  # every answer takes 1 s
    queries = len(PoolQueries("ns", "p").all())
    source = PrometheusSource(url(prometheus), timeout_seconds=4, deadline_seconds=4)
    started = time.monotonic()
    observations = asyncio.run(source.observe_pool("ns", "p"))
    elapsed = time.monotonic() - started
    assert observations["ns/p/a"].waiting == 7.0
    assert len(FakePrometheus.seen) == queries
    arrivals = sorted(call["at"] for call in FakePrometheus.seen)
    # One after another, they would arrive 1 s apart; at once, within moments (a loaded
    # machine stretches the moments, never to the seconds of sequential sends).
    assert arrivals[-1] - arrivals[0] < 3.0, "the queries were not sent at once"
    assert elapsed < queries - 1, f"{queries} queries of 1 s each took {elapsed:.1f} s"


def test_a_slow_prometheus_is_cut_at_the_deadline(prometheus):
    FakePrometheus.mode = "slow"
    source = PrometheusSource(url(prometheus), timeout_seconds=5, deadline_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="did not answer .* within 0.4s"):
        asyncio.run(source.observe_pool("ns", "p"))
    assert time.monotonic() - started < 0.9


def test_nobody_listening_is_reported():
    source = PrometheusSource("http://127.0.0.1:9", timeout_seconds=0.5)
    with pytest.raises(MetricsUnavailable, match=r"127.0.0.1:9: cannot connect"):
        asyncio.run(source.observe_pool("ns", "p"))


def test_latency_p99s_and_the_demand_history_are_read(prometheus):
    FakePrometheus.mode = "good"
    FakePrometheus.looked_back.clear()
    window = HistoryWindow(period_seconds=86700, span_seconds=1530, step_seconds=30)
    source = PrometheusSource(url(prometheus))
    observations = asyncio.run(source.observe_pool("ns", "p", [window]))
    a = observations["ns/p/a"]
    assert a.p99_ttft_seconds == 0.42
    # Beyond the largest bucket is no sample, like any other infinity, with the reason.
    assert a.p99_queue_seconds is None and "+inf for p99_queue" in a.problem
    assert [(s.at.timestamp(), s.rate) for s in a.demand_history] == [
        (SAMPLED - 86400 + 30 * k, 2.0 + k) for k in range(3)
    ]  # NaN is no sample
    (query,) = FakePrometheus.looked_back
    assert query.endswith("[1530s:30s] offset 85170s")
    # All of the pool's queries, look-backs too, at once and as instant queries.
    assert len(FakePrometheus.seen) == len(PoolQueries("ns", "p").all()) + 1
    assert {call["path"] for call in FakePrometheus.seen} == {"/api/v1/query"}
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


def test_credentials_and_headers_are_sent(prometheus):
    auth = PrometheusAuth(
        bearer_token="tok-123\n",  # token files end in a newline
        headers=(("X-Scope-OrgID", "team-a"),),
    )
    asyncio.run(PrometheusSource(url(prometheus), auth).observe_pool("ns", "p"))
    headers = FakePrometheus.seen[0]["headers"]
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["X-Scope-OrgID"] == "team-a"
    FakePrometheus.seen = []
    basic = PrometheusAuth(username="reader", password="pw")
    asyncio.run(PrometheusSource(url(prometheus), basic).observe_pool("ns", "p"))
    assert FakePrometheus.seen[0]["headers"]["Authorization"] == "Basic cmVhZGVyOnB3"


def test_credentials_are_resolved_at_each_call(prometheus):
    tokens = iter(["first", "second"])

    async def rotating() -> PrometheusAuth:
        return PrometheusAuth(bearer_token=next(tokens))

    source = PrometheusSource(url(prometheus), rotating)
    asyncio.run(source.observe_pool("ns", "p"))
    pool_queries = len(FakePrometheus.seen)
    asyncio.run(source.usage(UsageQueries("ns", "pool", "p", 60)))
    sent = [call["headers"]["Authorization"] for call in FakePrometheus.seen]
    # The pool's queries with the first token, then the three of the usage with the second.
    assert pool_queries > 1
    assert sent == ["Bearer first"] * pool_queries + ["Bearer second"] * 3


def test_secrets_never_show_in_a_repr():
    auth = PrometheusAuth(bearer_token="tok-123", password="pw", headers=(("X-Key", "k-9"),))
    assert not {"tok-123", "pw", "k-9"} & set(repr(auth).replace("'", " ").split())


@pytest.mark.parametrize("headers", [(("Bad Header", "x"),), (("X-Ok", "line\r\nInjected: yes"),)])
def test_bad_headers_are_refused(headers):
    with pytest.raises(MetricsUnavailable):
        PrometheusAuth(headers=headers)


def test_parsing_is_pure_and_strict():
    assert by_variant([{"metric": {"variant": "a"}, "value": [0, "2.5"]}], "q") == {"a": 2.5}
    with pytest.raises(MetricsUnavailable, match="no 'variant'"):
        by_variant([{"metric": {}, "value": [0, "1"]}], "q")
    with pytest.raises(MetricsUnavailable, match="no list"):
        by_variant({"oops": 1}, "q")


def test_usage_is_read_per_tenant_key_and_variant_from_the_gateways_counters(prometheus):
    queries = UsageQueries("llm", "policy", "chat", 3600)
    used = asyncio.run(PrometheusSource(url(prometheus)).usage(queries))
    assert used == {UsageKey("acme", "app", "a"): Usage(3, 120, 45)}
    sent = sorted(call["params"]["query"][0] for call in FakePrometheus.seen)
    assert sent == [
        f"sum by (tenant, key_id, variant) (increase(envoy_modelfleet_{name}"
        '{namespace=~"llm|",policy="chat"}[3600s]))'
        for name in ("completion_tokens", "prompt_tokens", "requests")
    ]


def test_usage_parsing_refuses_what_it_cannot_trust():
    good = {"metric": {"tenant": "t", "key_id": "k", "variant": "v"}, "value": [0, "4"]}
    nan = {"metric": {"tenant": "u", "key_id": "k", "variant": "v"}, "value": [0, "NaN"]}
    assert usage_from_results({"requests": [good, nan]}) == {UsageKey("t", "k", "v"): Usage(4)}
    with pytest.raises(MetricsUnavailable, match="no 'tenant'"):
        usage_from_results({"requests": [{"metric": {"variant": "v"}, "value": [0, "1"]}]})
    for lie in ("-1", "+Inf"):
        with pytest.raises(MetricsUnavailable, match="answered"):
            usage_from_results({"requests": [{**good, "value": [0, lie]}]})
    with pytest.raises(MetricsUnavailable, match="no list"):
        usage_from_results({"requests": {"oops": 1}})
