"""Observations of a pool's variants, read from Prometheus: the queries by name, the pure
functions that turn their answers into observations, and `PrometheusSource`, which asks
(through prometheus_http's client).

Series are selected by the labels `namespace`, `pool` and `variant`, which the scrape
config puts on every replica's samples (the chart's PodMonitor relabels the pod labels
`modelfleet.io/pool` and `modelfleet.io/variant`; the local cluster's file_sd sets them).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelfleet.api.modelpool import DEMAND_SMOOTHING_SECONDS, ModelPool
from modelfleet.observe.observation import RateSample, VariantObservation, variant_key
from modelfleet.observe.prometheus_http import (
    DEFAULT_TIMEOUT_SECONDS,
    MetricsUnavailable,
    PrometheusAuth,
    PrometheusClient,
)
from modelfleet.observe.usage import Usage, UsageKey

__all__ = [
    "HistoryWindow",
    "MetricsUnavailable",
    "PoolQueries",
    "PrometheusAuth",
    "PrometheusSource",
    "UsageQueries",
    "history_windows",
]

RATE_WINDOW = "1m"
HISTORY = "history:"  # prefix of the look-back queries' names
# The gateways' counters of what each answer used (docs/gateway.md, Metrics): per key,
# tenant, route and variant, with the policy and pool that the gateway serves.
USAGE_COUNTERS = {
    "requests": "envoy_modelfleet_requests",
    "prompt_tokens": "envoy_modelfleet_prompt_tokens",
    "completion_tokens": "envoy_modelfleet_completion_tokens",
}


@dataclass(frozen=True)
class HistoryWindow:
    """One stretch of the forecast's history: the request rate from `period` ago over the
    next `span`, every `step` (seconds of Prometheus's clock)."""

    period_seconds: float
    span_seconds: float
    step_seconds: float


def history_windows(
    pool: ModelPool, wall_seconds: Callable[[float], float] = float
) -> list[HistoryWindow]:
    """The look-backs the pool's forecasts need; `wall_seconds` turns the operator's
    seconds into Prometheus's (they differ only on a sped-up test clock)."""
    refresh = pool.spec.metrics.refresh_seconds
    smoothing = DEMAND_SMOOTHING_SECONDS
    # The last minutes' rates: the slo signal's demand, and the forecast's "now".
    spans: dict[int, float] = {smoothing: smoothing}
    for variant in pool.spec.variants:
        lead = variant.forecast_lead_seconds(refresh)
        if variant.forecast is None or lead is None:
            continue
        # Around each look-back up to its lead time after (the forecast averages rates
        # over the smoothing window on each side).
        for period in variant.forecast.lookback_seconds:
            span = lead + 2 * smoothing
            spans[period + smoothing] = max(spans.get(period + smoothing, 0.0), span)
    return [
        HistoryWindow(wall_seconds(ago), wall_seconds(span), wall_seconds(refresh))
        for ago, span in sorted(spans.items())
    ]


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


@dataclass(frozen=True)
class PoolQueries:
    namespace: str
    pool: str
    rate_window: str = RATE_WINDOW
    history: Sequence[HistoryWindow] = field(default_factory=tuple)

    @property
    def selector(self) -> str:
        return f'{{namespace="{self.namespace}",pool="{self.pool}"}}'

    def _p99(self, histogram: str) -> str:
        return (
            "histogram_quantile(0.99, sum by (le, variant) "
            f"(rate({histogram}_bucket{self.selector}[{self.rate_window}])))"
        )

    def look_backs(self) -> dict[str, str]:
        """Range vectors (a subquery, offset into the past): the request rate per variant
        from `period` ago over the following `span`, one sample per planning cycle."""
        rate = (
            f"sum by (variant) (rate(vllm:request_success_total{self.selector}"
            f"[{self.rate_window}]))"
        )
        queries = {}
        for w in self.history:
            offset = w.period_seconds - w.span_seconds
            if offset < 0:
                continue
            shift = f" offset {_duration(offset)}" if offset >= 1 else ""
            queries[f"{HISTORY}{w.period_seconds:g}"] = (
                f"({rate})[{_duration(w.span_seconds)}:{_duration(w.step_seconds)}]{shift}"
            )
        return queries

    def all(self) -> dict[str, str]:
        sel, window = self.selector, self.rate_window
        return {
            "waiting": f"sum by (variant) (vllm:num_requests_waiting{sel})",
            "running": f"sum by (variant) (vllm:num_requests_running{sel})",
            # The oldest sample among the replicas decides how fresh the variant's view is.
            "sampled_at": f"min by (variant) (timestamp(vllm:num_requests_waiting{sel}))",
            "qps": f"sum by (variant) (rate(vllm:request_success_total{sel}[{window}]))",
            "p99": self._p99("vllm:e2e_request_latency_seconds"),
            "p99_ttft": self._p99("vllm:time_to_first_token_seconds"),
            "p99_queue": self._p99("vllm:request_queue_time_seconds"),
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
    "p99_ttft": 1e6,
    "p99_queue": 1e6,
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


def series_by_variant(result: object, name: str) -> dict[str, list[RateSample]]:
    """Pure: a range-vector answer -> {variant: samples, oldest first}. A sample that is not
    a finite, non-negative rate is no sample: the forecast has less history, and a lie in
    last week's data never holds today's plan."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"unexpected answer to {name!r}: no list of series")
    series: dict[str, list[RateSample]] = {}
    for entry in result:
        try:
            variant = entry["metric"]["variant"]
            points = [(float(t), float(v)) for t, v in entry["values"]]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            problem = f"no {err}" if isinstance(err, KeyError) else type(err).__name__
            raise MetricsUnavailable(
                f"malformed series in answer to {name!r} ({problem})"
            ) from None
        series[variant] = [
            RateSample(datetime.fromtimestamp(t, UTC), v)
            for t, v in sorted(points)
            if _implausible("qps", v) is None and _implausible("sampled_at", t) is None
        ]
    return series


def observations_from_results(
    namespace: str,
    pool: str,
    results: Mapping[str, dict[str, float]],
    history: Mapping[str, dict[str, list[RateSample]]] | None = None,
) -> dict[str, VariantObservation]:
    """Pure: per-query {variant: value} (and per look-back {variant: samples}) ->
    Observations keyed by variant_key. Samples that are not finite, negative or implausible
    are dropped; the variant then carries the reason, which the metric signals report as
    they hold."""
    variants = set().union(*(r.keys() for r in results.values())) if results else set()
    variants |= set().union(*(h.keys() for h in (history or {}).values()))
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
        samples = sorted(
            (s for by_variant in (history or {}).values() for s in by_variant.get(variant, ())),
            key=lambda s: s.at,
        )
        observations[variant_key(namespace, pool, variant)] = VariantObservation(
            running=values.get("running"),
            waiting=values.get("waiting"),
            qps=values.get("qps"),
            p99_latency_seconds=values.get("p99"),
            error_rate=values.get("error_rate"),
            sampled_at=datetime.fromtimestamp(sampled, UTC) if sampled is not None else None,
            p99_ttft_seconds=values.get("p99_ttft"),
            p99_queue_seconds=values.get("p99_queue"),
            demand_history=tuple(samples),
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

    async def observe_pool(
        self, namespace: str, pool: str, history: Sequence[HistoryWindow] = ()
    ) -> dict[str, VariantObservation]:
        """The pool's observations; `history`: the look-backs its signals need
        (history_windows), asked as subqueries in the same call."""
        queries = PoolQueries(namespace, pool, history=tuple(history))
        look_backs = queries.look_backs()
        async with await self._client() as client:
            answers = await client.query_all(
                {**queries.all(), **look_backs},
                deadline_seconds=self._deadline,
                matrices=look_backs.keys(),
            )
        try:
            results = {
                name: by_variant(answer, name)
                for name, answer in answers.items()
                if name not in look_backs
            }
            looked_back = {name: series_by_variant(answers[name], name) for name in look_backs}
        except MetricsUnavailable as err:
            raise MetricsUnavailable(f"Prometheus at {client.shown_url}: {err}") from None
        return observations_from_results(namespace, pool, results, looked_back)

    async def usage(self, queries: UsageQueries) -> dict[UsageKey, Usage]:
        """What the tenants used through the gateways in `queries`' scope and window."""
        async with await self._client() as client:
            answers = await client.query_all(queries.all(), deadline_seconds=self._deadline)
        try:
            return usage_from_results(answers)
        except MetricsUnavailable as err:
            raise MetricsUnavailable(f"Prometheus at {client.shown_url}: {err}") from None
