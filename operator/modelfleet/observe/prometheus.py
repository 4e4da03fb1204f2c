"""Observations of a pool's variants, read from Prometheus.

Series are selected by the labels `namespace`, `pool` and `variant`, which the scrape
config puts on every replica's samples (the chart's PodMonitor relabels the pod labels
`modelfleet.io/pool` and `modelfleet.io/variant`; the local cluster's file_sd sets them).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from modelfleet.api.modelpool import DEMAND_SMOOTHING_SECONDS, ModelPool
from modelfleet.observe.observation import RateSample, VariantObservation, variant_key

RATE_WINDOW = "1m"
HISTORY = "history:"  # prefix of the look-back queries' names
# The gateways' per-key virtual clusters carry a `tenant` label (see docs/gateway.md).
TENANT_REQUESTS = (
    "sum by (tenant) (increase(envoy_vhost_vcluster_upstream_rq_completed[{window}s]))"
)


class MetricsUnavailable(Exception):
    """Prometheus could not be asked, or answered something unusable; the reason says which."""


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


def _by_variant(result: object, query: str) -> dict[str, float]:
    if not isinstance(result, list):
        raise MetricsUnavailable(f"unexpected answer to {query!r}: {str(result)[:120]}")
    values: dict[str, float] = {}
    for sample in result:
        try:
            variant = sample["metric"]["variant"]
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise MetricsUnavailable(f"malformed sample in answer to {query!r}: {err}") from None
        if not math.isnan(value):
            values[variant] = value
    return values


def series_by_variant(result: object, query: str) -> dict[str, list[RateSample]]:
    """Pure: a range-vector answer -> {variant: samples, oldest first}; NaN is no sample."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"unexpected answer to {query!r}: {str(result)[:120]}")
    series: dict[str, list[RateSample]] = {}
    for entry in result:
        try:
            variant = entry["metric"]["variant"]
            points = [(float(t), float(v)) for t, v in entry["values"]]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise MetricsUnavailable(f"malformed series in answer to {query!r}: {err}") from None
        series[variant] = [
            RateSample(datetime.fromtimestamp(t, UTC), v)
            for t, v in sorted(points)
            if math.isfinite(v)
        ]
    return series


def observations_from_results(
    namespace: str,
    pool: str,
    results: Mapping[str, dict[str, float]],
    history: Mapping[str, dict[str, list[RateSample]]] | None = None,
) -> dict[str, VariantObservation]:
    """Pure: per-query {variant: value} (and per look-back {variant: samples}) ->
    Observations keyed by variant_key."""
    variants = set().union(*(r.keys() for r in results.values())) if results else set()
    variants |= set().union(*(h.keys() for h in (history or {}).values()))
    observations = {}
    for variant in sorted(variants):
        sampled = results.get("sampled_at", {}).get(variant)
        samples = sorted(
            (s for by_variant in (history or {}).values() for s in by_variant.get(variant, ())),
            key=lambda s: s.at,
        )
        observations[variant_key(namespace, pool, variant)] = VariantObservation(
            running=results.get("running", {}).get(variant),
            waiting=results.get("waiting", {}).get(variant),
            qps=results.get("qps", {}).get(variant),
            p99_latency_seconds=results.get("p99", {}).get(variant),
            error_rate=results.get("error_rate", {}).get(variant),
            sampled_at=datetime.fromtimestamp(sampled, UTC) if sampled is not None else None,
            p99_ttft_seconds=results.get("p99_ttft", {}).get(variant),
            p99_queue_seconds=results.get("p99_queue", {}).get(variant),
            demand_history=tuple(samples),
        )
    return observations


class PrometheusSource:
    def __init__(self, url: str, timeout_seconds: float = 5.0):
        self.url = url
        self._timeout = timeout_seconds
        # No retries inside a cycle: the next cycle is the retry, and a hold meanwhile is safe.
        self._client = PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout_seconds, retry=Retry(total=0)
        )

    def _query_all(self, queries: Mapping[str, str], parse: Callable = _by_variant) -> dict:
        results = {}
        for name, query in queries.items():
            try:
                answer = self._client.custom_query(query)
            except Exception as err:  # requests, JSON and API errors alike
                raise MetricsUnavailable(
                    f"Prometheus at {self.url} failed: {type(err).__name__}: {str(err)[:200]}"
                ) from None
            results[name] = parse(answer, query)
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
            raise MetricsUnavailable(f"Prometheus at {self.url} failed: {err}") from None
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

    def _query_pool(self, queries: PoolQueries):
        return self._query_all(queries.all()), self._query_all(
            queries.look_backs(), series_by_variant
        )

    async def observe_pool(
        self, namespace: str, pool: str, history: Sequence[HistoryWindow] = ()
    ) -> dict[str, VariantObservation]:
        """The pool's observations; `history`: the forecasts' look-backs (history_windows)."""
        queries = PoolQueries(namespace, pool, history=tuple(history))
        count = len(queries.all()) + len(queries.look_backs())
        # prometheus-api-client is synchronous; keep the event loop free for kopf.
        try:
            results, looked_back = await asyncio.wait_for(
                asyncio.to_thread(self._query_pool, queries),
                timeout=self._timeout * (count + 1),
            )
        except TimeoutError:
            raise MetricsUnavailable(f"Prometheus at {self.url} timed out") from None
        return observations_from_results(namespace, pool, results, looked_back)
