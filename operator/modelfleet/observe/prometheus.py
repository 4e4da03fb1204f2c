"""Observations of a pool's variants, read from Prometheus: the queries by name, the pure
functions that turn their answers into observations, and `PrometheusSource`, which asks
(through prometheus_http's client).

Series are selected by the labels `namespace`, `pool` and `variant`, which the scrape
config puts on every replica's samples (the chart's PodMonitor relabels the pod labels
`modelfleet.io/pool` and `modelfleet.io/variant`; the local cluster's file_sd sets them).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.observe.prometheus_http import (
    DEFAULT_TIMEOUT_SECONDS,
    MetricsUnavailable,
    PrometheusAuth,
    PrometheusClient,
)

__all__ = ["MetricsUnavailable", "PoolQueries", "PrometheusAuth", "PrometheusSource"]

RATE_WINDOW = "1m"
# The gateways' per-key virtual clusters carry a `tenant` label (see docs/gateway.md).
TENANT_REQUESTS = (
    "sum by (tenant) (increase(envoy_vhost_vcluster_upstream_rq_completed[{window}s]))"
)


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


def by_variant(result: object, name: str) -> dict[str, float]:
    """Pure: one query's samples -> {variant: value}. NaN is no sample."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"unexpected answer to {name!r}: no list of samples")
    values: dict[str, float] = {}
    for sample in result:
        try:
            variant = sample["metric"]["variant"]
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            problem = f"no {err}" if isinstance(err, KeyError) else type(err).__name__
            raise MetricsUnavailable(
                f"malformed sample in answer to {name!r} ({problem})"
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


def tenant_counts(result: object) -> dict[str, float]:
    """Pure: the samples of TENANT_REQUESTS -> {tenant: requests}; unusable samples skipped."""
    counts: dict[str, float] = {}
    for sample in result if isinstance(result, list) else []:
        tenant = (sample.get("metric") or {}).get("tenant") if isinstance(sample, dict) else None
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if tenant and not math.isnan(value):
            counts[tenant] = value
    return counts


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


Credentials = PrometheusAuth | Callable[[], Awaitable[PrometheusAuth]]


class PrometheusSource:
    """One pool's Prometheus: the URL and how to authenticate, resolved at each call (a
    Secret may have rotated since the last cycle). Each call opens its own connection."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        deadline_seconds: float | None = None,
    ):
        self.url = url
        self._credentials = credentials or PrometheusAuth()
        self._timeout = timeout_seconds
        # All of a pool's queries must be answered within this, so a slow Prometheus
        # never delays the pool's cycle past its refresh period.
        self._deadline = deadline_seconds or timeout_seconds

    async def _client(self) -> PrometheusClient:
        credentials = self._credentials
        auth = credentials if isinstance(credentials, PrometheusAuth) else await credentials()
        return PrometheusClient(self.url, auth, timeout_seconds=min(self._timeout, self._deadline))

    async def observe_pool(self, namespace: str, pool: str) -> dict[str, VariantObservation]:
        async with await self._client() as client:
            answers = await client.query_all(
                PoolQueries(namespace, pool).all(), deadline_seconds=self._deadline
            )
        try:
            results = {name: by_variant(answer, name) for name, answer in answers.items()}
        except MetricsUnavailable as err:
            raise MetricsUnavailable(f"Prometheus at {client.shown_url}: {err}") from None
        return observations_from_results(namespace, pool, results)

    async def tenant_requests(self, seconds: float) -> dict[str, float]:
        """Requests per tenant that reached a backend through the gateways, over `seconds`."""
        query = TENANT_REQUESTS.format(window=max(1, round(seconds)))
        async with await self._client() as client:
            answer = await client.query_all(
                {"tenant_requests": query}, deadline_seconds=self._deadline
            )
        return tenant_counts(answer["tenant_requests"])
