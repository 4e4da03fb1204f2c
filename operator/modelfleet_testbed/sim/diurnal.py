"""Day curves for stretching a short trace over days, and the time change that applies one.

A profile gives an hourly load factor for each hour of a weekday and of a weekend day,
in the pool's time zone. Over a replay it becomes an `Envelope`: pieces of constant factor,
scaled so that their mean over the replay is 1. Arrivals of a process at a constant rate are
moved through the inverse of the envelope's cumulative integral, so the local rate becomes
rate x factor while the total number of requests, their order and their token lengths stay.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

HOURS = 24

# Office traffic: quiet nights, a morning ramp, a lunch dip, working-hours peak; weekends low.
_OFFICE_WEEKDAY = (
    0.15, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.7, 1.4, 1.9, 2.0, 1.9,
    1.5, 1.8, 2.0, 2.0, 1.8, 1.5, 1.0, 0.7, 0.5, 0.4, 0.3, 0.2,
)  # fmt: skip
_OFFICE_WEEKEND = (
    0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.5,
    0.5, 0.5, 0.5, 0.5, 0.45, 0.4, 0.35, 0.3, 0.3, 0.25, 0.2, 0.15,
)  # fmt: skip
# Consumer chat: low before dawn, busy through the day, an evening peak; every day alike.
_CONSUMER = (
    0.4, 0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.1, 1.2, 1.3,
    1.3, 1.3, 1.2, 1.2, 1.2, 1.3, 1.5, 1.7, 1.8, 1.6, 1.2, 0.7,
)  # fmt: skip


@dataclass(frozen=True)
class DiurnalProfile:
    name: str
    weekday: tuple[float, ...]  # 24 hourly factors, local time, Monday to Friday
    weekend: tuple[float, ...]  # Saturday and Sunday

    def factor(self, local: datetime) -> float:
        hours = self.weekend if local.weekday() >= 5 else self.weekday
        return hours[local.hour]

    def describe(self) -> str:
        if self.name == "flat":
            return "flat: the same rate at every hour"
        if self.weekday == self.weekend:
            return f"{self.name}: hourly factors (every day) {_factors(self.weekday)}"
        return (
            f"{self.name}: hourly factors on weekdays {_factors(self.weekday)}; "
            f"on weekends {_factors(self.weekend)}"
        )


def _factors(values: Sequence[float]) -> str:
    return " ".join(f"{v:g}" for v in values)


PROFILES = {
    "flat": DiurnalProfile("flat", (1.0,) * HOURS, (1.0,) * HOURS),
    "office": DiurnalProfile("office", _OFFICE_WEEKDAY, _OFFICE_WEEKEND),
    "consumer": DiurnalProfile("consumer", _CONSUMER, _CONSUMER),
}


def parse_profile(text: str) -> DiurnalProfile:
    """A built-in name, or 24 comma-separated hourly factors (hour 0 first, every day)."""
    if text in PROFILES:
        return PROFILES[text]
    parts = text.split(",")
    if len(parts) != HOURS:
        raise ValueError(
            f"{text!r}: use one of {', '.join(PROFILES)} or 24 comma-separated hourly factors"
        )
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text!r}: every hourly factor must be a number") from None
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise ValueError(f"{text!r}: factors must be >= 0 and not all 0")
    return DiurnalProfile("custom", values, values)


@dataclass(frozen=True)
class Envelope:
    """Piecewise-constant load factor over [0, duration) seconds of a replay, mean 1."""

    profile: DiurnalProfile
    starts: tuple[float, ...]  # piece i covers [starts[i], starts[i + 1]) (the last: duration)
    factors: tuple[float, ...]
    cumulative: tuple[float, ...]  # integral of the factor up to starts[i]
    duration: float

    def warp(self, base: Sequence[float]) -> list[float]:
        """Times in [0, duration) of a constant-rate process -> the enveloped times.
        `base` must be ascending; then one walk over the pieces is enough."""
        out = []
        piece = 0
        last = len(self.starts) - 1
        for u in base:
            # Pieces of factor 0 have no width in u, so this walk steps over them.
            while piece < last and self.cumulative[piece + 1] <= u:
                piece += 1
            factor = self.factors[piece]
            step = (u - self.cumulative[piece]) / factor if factor > 0 else 0.0
            out.append(self.starts[piece] + step)
        return out

    def factor_at(self, t: float) -> float:
        return self.factors[max(0, bisect.bisect_right(self.starts, t) - 1)]


def envelope(profile: DiurnalProfile, start: datetime, duration: float, tz: ZoneInfo) -> Envelope:
    """Cut [start, start + duration) at every local full hour and weigh each piece."""
    starts: list[float] = []
    raw: list[float] = []
    offset = 0.0
    while offset < duration:
        local = (start + timedelta(seconds=offset)).astimezone(tz)
        into_hour = local.minute * 60 + local.second + local.microsecond / 1e6
        starts.append(offset)
        raw.append(profile.factor(local))
        offset += 3600.0 - into_hour
    ends = [*starts[1:], duration]
    weight = sum(f * (end - begin) for f, begin, end in zip(raw, starts, ends, strict=True))
    if weight <= 0:
        raise ValueError(
            f"diurnal profile {profile.name!r} is 0 for the whole replay: give some hours load"
        )
    scale = duration / weight
    factors = tuple(f * scale for f in raw)
    cumulative = [0.0]
    for f, begin, end in zip(factors, starts, ends, strict=True):
        cumulative.append(cumulative[-1] + f * (end - begin))
    return Envelope(profile, tuple(starts), factors, tuple(cumulative[:-1]), duration)
