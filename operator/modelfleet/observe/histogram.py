"""Pure: what Prometheus's `histogram_quantile` computes from a classic histogram's buckets.

The operator asks Prometheus for vLLM's latency p99s; the simulator, which has no
Prometheus, counts its requests into the same buckets and calls this, so both see the
same number for the same requests (linear interpolation inside the bucket, the highest
finite bound when the quantile falls into the +Inf bucket, NaN without observations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# vLLM's bucket bounds (`PrometheusStatLogger`, vllm/v1/metrics/loggers.py, v0.11): for
# `vllm:time_to_first_token_seconds`, and for `vllm:e2e_request_latency_seconds` and
# `vllm:request_queue_time_seconds`. A p99 that falls inside a bucket is interpolated: all
# a classic histogram knows is that it lies somewhere in that bucket.
VLLM_TTFT_BOUNDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
VLLM_LATENCY_BOUNDS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def bucket_holding(bounds: Sequence[float], seconds: float) -> tuple[float, float] | None:
    """The bucket (lower, upper) that `seconds` lies strictly inside; None at a bound or
    past the last one."""
    lower = 0.0
    for upper in bounds:
        if seconds == upper:
            return None
        if seconds < upper:
            return (lower, upper) if seconds > lower else None
        lower = upper
    return None


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """`q` (0..1) of a histogram with finite upper `bounds` (ascending) and per-bucket
    `counts` (not cumulative), one more than the bounds: the last is the +Inf bucket."""
    if len(counts) != len(bounds) + 1:
        raise ValueError("counts need one bucket more than bounds (the +Inf bucket)")
    total = sum(counts)
    if total <= 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    below = 0.0
    for index, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if index == len(bounds):
                return bounds[-1]  # the +Inf bucket: its lower bound is all that is known
            upper = bounds[index]
            lower = 0.0 if index == 0 else bounds[index - 1]
            if index == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * ((rank - below) / count)
        below += count
    return bounds[-1]
