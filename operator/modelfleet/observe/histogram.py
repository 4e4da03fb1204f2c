"""Pure: what Prometheus's `histogram_quantile` computes from a classic histogram's buckets.

The operator asks Prometheus for vLLM's latency p99s; the simulator, which has no
Prometheus, counts its requests into the same buckets and calls this, so both see the
same number for the same requests (linear interpolation inside the bucket, the highest
finite bound when the quantile falls into the +Inf bucket, NaN without observations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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
