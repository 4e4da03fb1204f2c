"""Pure: the demand a variant should be ready for over its lead time, from its own history.

For each look-back period P (a day, a week) the history holds the variant's request rate
from P ago up to P minus the lead time ago: what came next, last time. The forecast for the
period is the highest rate in that window, scaled down when today runs below that day at
this hour (a Saturday after a Friday, a holiday): rate now / rate P ago, never above 1, so a
quiet day is not provisioned like a busy one and a busier one is left to the slo and queue
signals. The largest forecast over the periods wins (a Monday remembers last Monday, not
Sunday). A period with no samples in its window has no opinion; so does a variant with
no history at all.

The operator reads the history from Prometheus (the rate a period ago, by `offset`
subqueries); the simulator passes its own recorded series. Both come here as samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelfleet.observe.observation import RateSample


@dataclass(frozen=True)
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


def window(
    history: Sequence[RateSample], now: datetime, period_seconds: int, lead_seconds: float
) -> list[RateSample]:
    """The samples from `period` ago (exclusive) up to `period - lead` ago (inclusive)."""
    start = now - timedelta(seconds=period_seconds)
    end = start + timedelta(seconds=lead_seconds)
    return [s for s in history if start < s.at <= end]


def expected_demand(
    history: Sequence[RateSample],
    now: datetime,
    periods: Sequence[int],
    lead_seconds: float,
    rate_now: float | None,
) -> Expected | None:
    """The largest demand any look-back period expects over the lead time, or None."""
    best = None
    for period in periods:
        samples = window(history, now, period, lead_seconds)
        if not samples:
            continue
        seen = max(s.rate for s in samples)
        then = samples[0].rate
        scale = 1.0
        if rate_now is not None and then > 0 and rate_now < then:
            scale = rate_now / then
        candidate = Expected(seen * scale, period, seen, then, scale)
        if best is None or candidate.rate > best.rate:
            best = candidate
    return best
