"""Five-field cron expressions evaluated in wall-clock time of an IANA zone.

croniter parses and expands the fields; the evaluation is ours so that the
DST rules are explicit: a firing that falls into a spring-forward gap happens
at the first instant after the gap (as Vixie cron does), and a firing in a
fall-back hour happens once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

UTC = ZoneInfo("UTC")

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int] | None  # None = any
    months: frozenset[int] | None
    days_of_week: frozenset[int] | None  # 0 = Sunday

    def matches_day(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        dom_ok = self.days_of_month is None or day.day in self.days_of_month
        dow_ok = self.days_of_week is None or (day.isoweekday() % 7) in self.days_of_week
        if self.days_of_month is not None and self.days_of_week is not None:
            return dom_ok or dow_ok  # classic cron: both restricted -> either matches
        return dom_ok and dow_ok

    def times_of_day_descending(self) -> list[time]:
        return [time(h, m) for h in reversed(self.hours) for m in reversed(self.minutes)]


@lru_cache(maxsize=4096)
def parse_cron(expression: str) -> CronSchedule:
    text = _MACROS.get(expression.strip(), expression.strip())
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            f"{expression!r} has {len(fields)} fields: use five fields "
            "'minute hour day-of-month month day-of-week' (e.g. '0 8 * * 1-5')"
        )
    if any(c in text for c in "LW#?"):
        raise CronError(f"{expression!r} uses L, W, # or ?: use plain ranges, lists and steps")
    if not croniter.is_valid(text):
        raise CronError(
            f"{expression!r} is not a valid cron expression: each field takes numbers, "
            "ranges (1-5), lists (1,3), steps (*/15) or names (MON-FRI, JAN)"
        )
    minutes, hours, dom, months, dow = croniter(text).expanded

    def restricted(values: list) -> frozenset[int] | None:
        return None if values == ["*"] else frozenset(int(v) for v in values)

    def every(values: list, full: range) -> tuple[int, ...]:
        return tuple(full) if values == ["*"] else tuple(sorted(int(v) for v in values))

    days_of_week = restricted(dow)
    if days_of_week is not None:
        days_of_week = frozenset(d % 7 for d in days_of_week)
    return CronSchedule(
        expression=expression,
        minutes=every(minutes, range(60)),
        hours=every(hours, range(24)),
        days_of_month=restricted(dom),
        months=restricted(months),
        days_of_week=days_of_week,
    )


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def wall_time_to_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant a cron firing at local `day at` happens (see module doc for DST)."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a spring-forward gap fold=1 lands before the gap; step to the gap's end, the
    # first instant whose wall clock has passed the requested time (gaps are minutes
    # to hours long).
    candidate = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    while candidate.astimezone(tz).replace(tzinfo=None) < naive:
        candidate += timedelta(minutes=1)
    return candidate


def last_firing_at_or_before(
    cron: CronSchedule, tz: ZoneInfo, at: datetime, lookback_days: int = 8
) -> datetime | None:
    """The most recent firing <= `at`, or None if none in the last `lookback_days` days."""
    at_utc = at.astimezone(UTC)
    horizon = at_utc - timedelta(days=lookback_days)
    local_day = at_utc.astimezone(tz).date()
    # One extra day back covers firings shifted across midnight by a DST gap.
    for back in range(lookback_days + 2):
        day = local_day - timedelta(days=back)
        if not cron.matches_day(day):
            continue
        for at_time in cron.times_of_day_descending():
            instant = wall_time_to_instant(day, at_time, tz)
            if instant <= at_utc:
                return instant if instant >= horizon else None
    return None


def next_firing_after(
    cron: CronSchedule, tz: ZoneInfo, at: datetime, lookahead_days: int = 8
) -> datetime | None:
    """The first firing > `at`, or None if none in the next `lookahead_days` days."""
    at_utc = at.astimezone(UTC)
    horizon = at_utc + timedelta(days=lookahead_days)
    local_day = at_utc.astimezone(tz).date()
    # One day before covers a firing shifted across midnight by a DST gap.
    for ahead in range(-1, lookahead_days + 1):
        day = local_day + timedelta(days=ahead)
        if not cron.matches_day(day):
            continue
        for at_time in reversed(cron.times_of_day_descending()):
            instant = wall_time_to_instant(day, at_time, tz)
            if instant > at_utc:
                return instant if instant <= horizon else None
    return None
