"""Pure: the demand a variant should be ready for over its lead time, from its own history.

For each look-back period P (a day, a week) the history holds the variant's request rate
from P ago up to P minus the lead time ago: what came next, last time. The forecast for the
period is the highest rate in that window, each moment's rate averaged over the minutes
that follow it (a step up counts in full, a minute's burst is not provisioned for), scaled
down when today runs below that day at this hour (a Saturday after a Friday, a holiday): rate now / rate P ago, never above 1, so a
quiet day is not provisioned like a busy one and a busier one is left to the slo and queue
signals. The largest forecast over the periods wins (a Monday remembers last Monday, not
Sunday). A period with no samples in its window has no opinion; so does a variant with
no history at all.

The operator reads the history from Prometheus (the rate a period ago, by `offset`
subqueries, and the last five minutes); the simulator passes its own recorded series. Both
come here as samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelfleet.api.modelpool import DEMAND_SMOOTHING_SECONDS
from modelfleet.observe.observation import RateSample


@dataclass(frozen=True, slots=True)
class Expected:
    """The demand one look-back period expects over the lead time."""

    rate: float  # requests/s to be ready for
    period_seconds: int
    seen: float  # the highest rate in the window, last period
    then: float  # the rate at this time, last period
    scale: float  # today against then (<= 1)

    def describe(self) -> str:
        ago = _ago(self.period_seconds)
        if self.scale >= 1:
            return f"{self.rate:.3g} req/s, the most in the next lead time {ago}"
        return (
            f"{self.rate:.3g} req/s: {self.seen:.3g} at most in the next lead time {ago}, "
            f"x {self.scale:.2f} as today runs below that day ({self.then:.3g} req/s then)"
        )


def _ago(seconds: int) -> str:
    if seconds % 604800 == 0:
        weeks = seconds // 604800
        return "a week ago" if weeks == 1 else f"{weeks} weeks ago"
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "a day ago" if days == 1 else f"{days} days ago"
    return f"{seconds / 3600:g} h ago"


def _mean(rates: Sequence[float]) -> float | None:
    return sum(rates) / len(rates) if rates else None


def smoothed(history: Sequence[RateSample], end: datetime) -> float | None:
    """The mean request rate of the samples (oldest first) in the DEMAND_SMOOTHING_SECONDS
    up to `end` (the rate now, and the rate at this time a look-back ago)."""
    start = end - timedelta(seconds=DEMAND_SMOOTHING_SECONDS)
    rates = []
    for sample in reversed(history):
        if sample.at <= start:
            break
        if sample.at <= end:
            rates.append(sample.rate)
    return _mean(rates)


def expected_demand(
    history: Sequence[RateSample],
    now: datetime,
    periods: Sequence[int],
    lead_seconds: float,
    rate_now: float | None,
) -> Expected | None:
    """The largest demand any look-back period expects over the lead time, or None.

    Rates are averaged over DEMAND_SMOOTHING_SECONDS, so a burst of a minute a day ago
    is not provisioned for all day; `rate_now` stands in when the history holds nothing
    recent."""
    smoothing = timedelta(seconds=DEMAND_SMOOTHING_SECONDS)
    recent = smoothed(history, now)
    if recent is None:
        recent = rate_now
    best = None
    for period in periods:
        start = now - timedelta(seconds=period)
        end = start + timedelta(seconds=lead_seconds)
        samples = [s for s in history if start - smoothing < s.at <= end + smoothing]
        # Every moment of the lead time, each by the rate of the minutes that follow it (a
        # step up counts in full, a burst a day ago does not): a replica that would be
        # needed again before it could load is not given up in between.
        ahead = [s for s in samples if start < s.at <= end]
        if not ahead:
            continue
        seen = max(
            _mean([o.rate for o in samples if s.at <= o.at < s.at + smoothing]) or 0.0
            for s in ahead
        )
        then = smoothed(samples, start)
        if then is None:
            then = ahead[0].rate
        scale = 1.0
        if recent is not None and then > 0 and recent < then:
            scale = recent / then
        candidate = Expected(seen * scale, period, seen, then, scale)
        if best is None or candidate.rate > best.rate:
            best = candidate
    return best
