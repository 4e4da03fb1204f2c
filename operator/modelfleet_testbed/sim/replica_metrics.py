"""vLLM's Prometheus metrics for one simulated replica, in a registry of its own.

Names, labels (``model_name``, ``engine``; ``finished_reason`` on the success counter)
and histogram buckets follow vLLM's ``PrometheusStatLogger`` in
``vllm/v1/metrics/loggers.py``, so the operator's queries work on both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from modelfleet.observe.histogram import VLLM_LATENCY_BOUNDS, VLLM_TTFT_BOUNDS
from modelfleet_testbed.sim.batching import FinishedRequest

__all__ = ["CONTENT_TYPE", "FINISH_REASONS", "LATENCY_BUCKETS", "TTFT_BUCKETS", "ReplicaMetrics"]

# Prometheus 2.x reads the classic text format; say so rather than the client's newest.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
FINISH_REASONS = ("stop", "length", "abort")

TTFT_BUCKETS = VLLM_TTFT_BOUNDS
LATENCY_BUCKETS = VLLM_LATENCY_BOUNDS
_LABELS = ("model_name", "engine")


class ReplicaMetrics:
    """The metrics one replica exports; latencies are given in wall-clock seconds."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        labels = (model_name, "0")

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, _LABELS, registry=self.registry).labels(*labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, _LABELS, registry=self.registry).labels(*labels)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, _LABELS, buckets=buckets, registry=self.registry).labels(
                *labels
            )

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.kv_cache_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            (*_LABELS, "finished_reason"),
            registry=self.registry,
        )
        self.success = {reason: success.labels(*labels, reason) for reason in FINISH_REASONS}
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            LATENCY_BUCKETS,
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LATENCY_BUCKETS,
        )

    def set_load(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_cache_usage.set(kv_cache_usage)

    def first_token(self, prompt_tokens: int, ttft_seconds: float) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.ttft.observe(ttft_seconds)

    def finished(
        self, request: FinishedRequest, finish_reason: str, generated_tokens: int, time_scale: float
    ) -> None:
        """Record a finished request; engine times times ``time_scale`` are wall seconds."""
        self.generation_tokens.inc(generated_tokens)
        self.success[finish_reason].inc()
        self.e2e.observe(request.e2e_seconds * time_scale)
        self.queue_time.observe(request.queued_seconds * time_scale)

    def aborted(self, generated_tokens: int) -> None:
        self.generation_tokens.inc(generated_tokens)
        self.success["abort"].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
