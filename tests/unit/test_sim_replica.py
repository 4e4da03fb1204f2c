"""Simulated vLLM replicas as real servers on 127.0.0.1, driven by the openai client."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet_testbed.sim.batching import BatchEngine, FinishedRequest
from modelfleet_testbed.sim.gpu import get_profile
from modelfleet_testbed.sim.openai_api import fake_text
from modelfleet_testbed.sim.replica import RunningReplica, start_replica

MODEL = "Qwen/Qwen3-30B-A3B-Instruct-2507"
ALIAS = "qwen3-30b-moe"
MOE_30B = "qwen3-30b-a3b/1xH100"
DENSE_70B = "llama-3.1-70b/4xH100"


class ReplicaHost:
    """One event loop in a thread serving replicas to the synchronous test code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.replicas: list[RunningReplica] = []

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self, name: str, profile: str = MOE_30B, **options: Any) -> RunningReplica:
        replica = self.run(start_replica(name, MODEL, profile, aliases=[ALIAS], **options))
        self.replicas.append(replica)
        return replica

    def stop(self, replica: RunningReplica) -> None:
        self.replicas.remove(replica)
        self.run(replica.stop())

    def close(self) -> None:
        for replica in list(self.replicas):
            self.stop(replica)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def host() -> Iterator[ReplicaHost]:
    replicas = ReplicaHost()
    yield replicas
    replicas.close()


def client(replica: RunningReplica) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.url}/v1", api_key="unused", max_retries=0, timeout=20)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(replica: RunningReplica) -> dict[str, float]:
    """Every sample of /metrics, keyed like ``name{label=value,...}`` without model labels."""
    status, text = http_get(f"{replica.url}/metrics")
    assert status == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.pop("model_name") == MODEL
            assert sample.labels.pop("engine") == "0"
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def expected_timing(profile: str, prompt_tokens: int, output_tokens: int) -> FinishedRequest:
    engine = BatchEngine(get_profile(profile))
    engine.submit("alone", prompt_tokens, output_tokens, at=0.0)
    (finished,) = [e for e in engine.advance_to(1e6) if isinstance(e, FinishedRequest)]
    return finished


# -- the OpenAI API ------------------------------------------------------------------------


def test_chat_completion_answers_like_openai(host):
    replica = host.start("chat-0")
    raw = client(replica).chat.completions.with_raw_response.create(
        model=ALIAS,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "x" * 392},
        ],
        max_tokens=12,
        extra_body={"task_type": "chat", "priority": "low"},
    )
    assert raw.headers["x-served-by"] == "chat-0"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == ALIAS
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == fake_text(0, 12)
    assert choice.finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 12)
    assert completion.usage.total_tokens == 112


def test_chat_stream_parses_as_openai_chunks(host):
    replica = host.start("chat-stream")
    stream = client(replica).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello " * 50}]}],
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 2, "tokens should arrive in several chunks"
    assert "".join(content) == fake_text(0, 60)
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert [c.choices[0].finish_reason for c in with_choices][-1] == "length"
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (75, 60)


def test_completions_count_token_ids_and_stream(host):
    replica = host.start("completions")
    openai_client = client(replica)
    completion = openai_client.completions.create(model=MODEL, prompt=[7] * 77, max_tokens=5)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == fake_text(0, 5)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (77, 5)

    chunks = list(
        openai_client.completions.create(
            model=MODEL,
            prompt="tell me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert text == fake_text(0, 128)  # no max_tokens: the replica's default length
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 128


def test_embeddings_are_deterministic_unit_vectors(host):
    replica = host.start("embed")
    openai_client = client(replica)
    # The openai client asks for base64 by default and decodes it.
    first = openai_client.embeddings.create(
        model=MODEL, input=["alpha", "beta gamma"], dimensions=8
    )
    again = openai_client.embeddings.create(
        model=MODEL, input="alpha", dimensions=8, encoding_format="float"
    )
    vectors = [item.embedding for item in first.data]
    assert [len(vector) for vector in vectors] == [8, 8]
    assert all(
        math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5) for vector in vectors
    )
    assert vectors[0] != vectors[1]
    assert again.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)
    assert first.usage.prompt_tokens == 2 + 3
    samples = scrape(replica)
    assert samples["vllm:request_success_total{finished_reason=stop}"] == 3
    assert samples["vllm:generation_tokens_total"] == 0


def test_models_and_errors(host):
    replica = host.start("errors")
    openai_client = client(replica)
    assert [model.id for model in openai_client.models.list()] == [MODEL, ALIAS]
    with pytest.raises(openai.NotFoundError, match="The model `nope` does not exist"):
        openai_client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError, match="'messages' must be a non-empty list"):
        openai_client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="'max_tokens' must be an integer >= 1"):
        openai_client.completions.create(model=MODEL, prompt="x", max_tokens=0)
    with pytest.raises(openai.BadRequestError, match="tokens of KV cache"):
        openai_client.completions.create(model=MODEL, prompt="x", max_tokens=200_000)
    request = urllib.request.Request(
        f"{replica.url}/v1/chat/completions", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["message"] == "the request body must be JSON"


# -- life cycle ----------------------------------------------------------------------------


def test_health_answers_503_until_the_model_is_loaded(host):
    replica = host.start("slow-start", startup_seconds=0.5)
    assert http_get(f"{replica.url}/health")[0] == 503
    with pytest.raises(openai.InternalServerError, match="still loading its model"):
        client(replica).completions.create(model=MODEL, prompt="x", max_tokens=1)
    wait_until(lambda: http_get(f"{replica.url}/health")[0] == 200)
    assert replica.ready
    assert client(replica).completions.create(model=MODEL, prompt="x", max_tokens=1).usage


def test_client_disconnect_aborts_its_request(host):
    replica = host.start("disconnect", profile=DENSE_70B)
    stream = client(replica).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go"}], max_tokens=5000, stream=True
    )
    next(iter(stream))
    assert scrape(replica)["vllm:num_requests_running"] == 1
    stream.close()
    wait_until(lambda: scrape(replica)["vllm:num_requests_running"] == 0)
    samples = scrape(replica)
    assert samples["vllm:request_success_total{finished_reason=abort}"] == 1
    assert samples["vllm:request_success_total{finished_reason=length}"] == 0


def test_stop_ends_in_flight_requests_quickly(host):
    replica = host.start("stopping", profile=DENSE_70B)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            client(replica).completions.create, model=MODEL, prompt="x", max_tokens=5000
        )
        wait_until(lambda: scrape(replica)["vllm:num_requests_running"] == 1)
        started = time.monotonic()
        host.stop(replica)
        assert time.monotonic() - started < 3
        with pytest.raises((openai.InternalServerError, openai.APIConnectionError)):
            answer.result(timeout=5)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{replica.url}/health", timeout=2)


# -- load and metrics ------------------------------------------------------------------


def test_burst_beyond_max_num_seqs_queues_then_drains(host):
    replica = host.start("burst", profile=DENSE_70B, max_num_seqs=2, speedup=4)
    openai_client = client(replica)
    requests = 8

    def ask(index: int) -> int:
        completion = openai_client.completions.create(
            model=MODEL, prompt="y" * 400, max_tokens=30 + index
        )
        return completion.usage.completion_tokens

    observed: list[dict[str, float]] = []
    with ThreadPoolExecutor(requests) as pool:
        answers = [pool.submit(ask, index) for index in range(requests)]
        while not all(answer.done() for answer in answers):
            observed.append(scrape(replica))
            time.sleep(0.02)
        generated = [answer.result() for answer in answers]

    assert max(sample["vllm:num_requests_waiting"] for sample in observed) > 0
    assert max(sample["vllm:num_requests_running"] for sample in observed) == 2
    after = scrape(replica)
    assert after["vllm:num_requests_waiting"] == after["vllm:num_requests_running"] == 0
    assert generated == [30 + index for index in range(requests)]
    assert after["vllm:request_success_total{finished_reason=length}"] == requests
    assert after["vllm:generation_tokens_total"] == sum(generated)
    assert after["vllm:prompt_tokens_total"] == 100 * requests
    assert after["vllm:e2e_request_latency_seconds_count"] == requests
    assert after["vllm:time_to_first_token_seconds_count"] == requests
    assert after["vllm:request_queue_time_seconds_sum"] > 0
    assert (
        after["vllm:e2e_request_latency_seconds_sum"]
        > after["vllm:time_to_first_token_seconds_sum"]
        >= after["vllm:request_queue_time_seconds_sum"]
    )


def test_latency_metrics_follow_the_speed_model_scaled_by_speedup(host):
    replica = host.start("timed", profile=DENSE_70B, speedup=5)
    client(replica).completions.create(model=MODEL, prompt="z" * 800, max_tokens=40)
    expected = expected_timing(DENSE_70B, prompt_tokens=200, output_tokens=40)
    samples = scrape(replica)
    assert samples["vllm:e2e_request_latency_seconds_sum"] == pytest.approx(
        expected.e2e_seconds / 5, rel=1e-9
    )
    assert samples["vllm:time_to_first_token_seconds_sum"] == pytest.approx(
        expected.ttft_seconds / 5, rel=1e-9
    )
    assert samples["vllm:request_queue_time_seconds_sum"] == 0


def test_module_entry_serves_until_terminated():
    command = [
        sys.executable,
        "-m",
        "modelfleet_testbed.sim.replica",
        "--model",
        "Qwen/Qwen2.5-7B-Instruct",
    ]
    command += ["--port", "0", "--name", "by-hand", "--served-model-name", "qwen25-7b", "alias-7b"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert started["event"] == "replica.started"
        assert started["profile"] == "mistral-7b/1xL40S"
        body = json.dumps({"model": "alias-7b", "prompt": "hi", "max_tokens": 3}).encode()
        request = urllib.request.Request(
            f"{started['url']}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["x-served-by"] == "by-hand"
            assert json.loads(response.read())["usage"]["completion_tokens"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
