"""Observations of a pool's variants, read from Prometheus.

Series are selected by the labels `namespace`, `pool` and `variant`, which the scrape
config puts on every replica's samples (the chart's PodMonitor relabels the pod labels
`modelfleet.io/pool` and `modelfleet.io/variant`; the local cluster's file_sd sets them).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from modelfleet.observe.observation import VariantObservation, variant_key

RATE_WINDOW = "1m"
# The gateways' per-key virtual clusters carry a `tenant` label (see docs/gateway.md).
TENANT_REQUESTS = (
    "sum by (tenant) (increase(envoy_vhost_vcluster_upstream_rq_completed[{window}s]))"
)


class MetricsUnavailable(Exception):
    """Prometheus could not be asked, or answered something unusable; the reason says which."""


@dataclass(frozen=True)
class PoolQueries:
    namespace: str
    pool: str
    rate_window: str = RATE_WINDOW

    @property
    def selector(self) -> str:
        return f'{{namespace="{self.namespace}",pool="{self.pool}"}}'

    def all(self) -> dict[str, str]:
        sel, window = self.selector, self.rate_window
        return {
            "waiting": f"sum by (variant) (vllm:num_requests_waiting{sel})",
            "running": f"sum by (variant) (vllm:num_requests_running{sel})",
            # The oldest sample among the replicas decides how fresh the variant's view is.
            "sampled_at": f"min by (variant) (timestamp(vllm:num_requests_waiting{sel}))",
            "qps": f"sum by (variant) (rate(vllm:request_success_total{sel}[{window}]))",
            "p99": "histogram_quantile(0.99, sum by (le, variant) "
            f"(rate(vllm:e2e_request_latency_seconds_bucket{sel}[{window}])))",
            "error_rate": (
                f'sum by (variant) (rate(vllm:request_success_total{{namespace="{self.namespace}",'
                f'pool="{self.pool}",finished_reason="abort"}}[{window}])) / '
                f"sum by (variant) (rate(vllm:request_success_total{sel}[{window}]))"
            ),
        }


def _by_variant(result: object, query: str) -> dict[str, float]:
    if not isinstance(result, list):
        raise MetricsUnavailable(f"unexpected answer to {query!r}: not a vector")
    values: dict[str, float] = {}
    for sample in result:
        try:
            variant = sample["metric"]["variant"]
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise MetricsUnavailable(
                f"malformed sample in answer to {query!r}: {type(err).__name__}"
            ) from None
        if not math.isnan(value):
            values[variant] = value
    return values


# What a sample can plausibly be; anything else is a lie (a broken exporter, a bad recording
# rule) and is treated as no sample, with the reason.
PLAUSIBLE = {
    "waiting": 1e9,
    "running": 1e9,
    "qps": 1e9,
    "p99": 1e6,
    "error_rate": 1.0,
    "sampled_at": 1e11,  # seconds since the epoch: before the year 5138
}


def _implausible(name: str, value: float) -> str | None:
    if not math.isfinite(value):
        return f"Prometheus answered {value:+} for {name}"
    if value < 0:
        return f"Prometheus answered a negative {name} ({value:g})"
    if value > PLAUSIBLE.get(name, math.inf):
        return f"Prometheus answered an implausible {name} ({value:g})"
    return None


def observations_from_results(
    namespace: str, pool: str, results: Mapping[str, dict[str, float]]
) -> dict[str, VariantObservation]:
    """Pure: per-query {variant: value} -> Observations keyed by variant_key. Samples that
    are not finite, negative or implausible are dropped; the variant then carries the
    reason, which the queue signal reports as it holds."""
    variants = set().union(*(r.keys() for r in results.values())) if results else set()
    observations = {}
    for variant in sorted(variants):
        values: dict[str, float | None] = {}
        problems = []
        for name, by_variant in results.items():
            value = by_variant.get(variant)
            problem = None if value is None else _implausible(name, value)
            if problem:
                problems.append(problem)
            values[name] = None if problem else value
        sampled = values.get("sampled_at")
        observations[variant_key(namespace, pool, variant)] = VariantObservation(
            running=values.get("running"),
            waiting=values.get("waiting"),
            qps=values.get("qps"),
            p99_latency_seconds=values.get("p99"),
            error_rate=values.get("error_rate"),
            sampled_at=datetime.fromtimestamp(sampled, UTC) if sampled is not None else None,
            problem="; ".join(problems) or None,
        )
    return observations


def _failure(err: Exception) -> str:
    """What went wrong, never what the server answered (a status message is no place for a
    proxy's error page, or whatever else a URL returned)."""
    status = re.search(r"HTTP Status Code (\d{3})", str(err))
    return f"HTTP {status.group(1)}" if status else type(err).__name__


class PrometheusSource:
    def __init__(self, url: str, timeout_seconds: float = 5.0):
        self.url = url
        self._timeout = timeout_seconds
        # No retries inside a cycle: the next cycle is the retry, and a hold meanwhile is safe.
        self._client = PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout_seconds, retry=Retry(total=0)
        )

    def _query_all(self, queries: Mapping[str, str]) -> dict[str, dict[str, float]]:
        results = {}
        for name, query in queries.items():
            try:
                answer = self._client.custom_query(query)
            except Exception as err:  # requests, JSON and API errors alike
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} failed: {_failure(err)}"
                ) from None
            results[name] = _by_variant(answer, query)
        return results

    async def tenant_requests(self, seconds: float) -> dict[str, float]:
        """Requests per tenant that reached a backend through the gateways, over `seconds`."""
        window = max(1, round(seconds))
        query = TENANT_REQUESTS.format(window=window)
        try:
            answer = await asyncio.wait_for(
                asyncio.to_thread(self._client.custom_query, query), timeout=self._timeout
            )
        except Exception as err:
            raise MetricsUnavailable(f"Prometheus at {self.url} failed: {_failure(err)}") from None
        counts: dict[str, float] = {}
        for sample in answer if isinstance(answer, list) else []:
            tenant = sample.get("metric", {}).get("tenant")
            try:
                value = float(sample["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if tenant and not math.isnan(value):
                counts[tenant] = value
        return counts

    async def observe_pool(self, namespace: str, pool: str) -> dict[str, VariantObservation]:
        queries = PoolQueries(namespace, pool).all()
        # prometheus-api-client is synchronous; keep the event loop free for kopf.
        try:
            results = await asyncio.wait_for(
                asyncio.to_thread(self._query_all, queries),
                timeout=self._timeout * (len(queries) + 1),
            )
        except TimeoutError:
            raise MetricsUnavailable(f"Prometheus at {self.url} timed out") from None
        return observations_from_results(namespace, pool, results)
