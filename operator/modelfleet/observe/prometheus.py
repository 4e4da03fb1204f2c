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
from modelfleet.observe.usage import Usage, UsageKey

__all__ = [
    "MetricsUnavailable",
    "PoolQueries",
    "PrometheusAuth",
    "PrometheusSource",
    "UsageQueries",
]

RATE_WINDOW = "1m"
# The gateways' counters of what each answer used (docs/gateway.md, Metrics): per key,
# tenant, route and variant, with the policy and pool that the gateway serves.
USAGE_COUNTERS = {
    "requests": "envoy_modelfleet_requests",
    "prompt_tokens": "envoy_modelfleet_prompt_tokens",
    "completion_tokens": "envoy_modelfleet_completion_tokens",
}


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


@dataclass(frozen=True)
class UsageQueries:
    """What the tenants used through the gateways of one pool (`scope="pool"`) or one
    RoutingPolicy (`scope="policy"`) over the last `seconds`. A cluster's scrape adds the
    pod's `namespace`; a scrape without it (a static target) matches by the pool or policy
    name alone."""

    namespace: str
    scope: str  # "pool" | "policy"
    name: str
    seconds: int

    @property
    def selector(self) -> str:
        return f'{{namespace=~"{self.namespace}|",{self.scope}="{self.name}"}}'

    def all(self) -> dict[str, str]:
        window = f"{max(1, self.seconds)}s"
        return {
            name: f"sum by (tenant, key_id, variant) (increase({metric}{self.selector}[{window}]))"
            for name, metric in USAGE_COUNTERS.items()
        }


def usage_from_results(results: Mapping[str, object]) -> dict[UsageKey, Usage]:
    """Pure: the answers to UsageQueries -> per (tenant, key, variant) usage. A sample that
    is malformed, not finite or negative makes the whole answer unusable: spend decides
    whether a tenant is blocked, so it is never guessed."""
    found: dict[UsageKey, dict[str, float]] = {}
    for name, result in results.items():
        if not isinstance(result, list):
            raise MetricsUnavailable(f"unexpected answer to {name!r}: no list of samples")
        for sample in result:
            try:
                labels = sample["metric"]
                key = UsageKey(labels["tenant"], labels.get("key_id", ""), labels["variant"])
                value = float(sample["value"][1])
            except (KeyError, IndexError, TypeError, ValueError) as err:
                problem = f"no {err}" if isinstance(err, KeyError) else type(err).__name__
                raise MetricsUnavailable(
                    f"malformed sample in answer to {name!r} ({problem})"
                ) from None
            if math.isnan(value):
                continue
            if not math.isfinite(value) or value < 0:
                raise MetricsUnavailable(f"Prometheus answered {value:g} for {name}")
            found.setdefault(key, {})[name] = value
    return {
        key: Usage(
            values.get("requests", 0.0),
            values.get("prompt_tokens", 0.0),
            values.get("completion_tokens", 0.0),
        )
        for key, values in sorted(found.items())
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

    async def usage(self, queries: UsageQueries) -> dict[UsageKey, Usage]:
        """What the tenants used through the gateways in `queries`' scope and window."""
        async with await self._client() as client:
            answers = await client.query_all(queries.all(), deadline_seconds=self._deadline)
        try:
            return usage_from_results(answers)
        except MetricsUnavailable as err:
            raise MetricsUnavailable(f"Prometheus at {client.shown_url}: {err}") from None
