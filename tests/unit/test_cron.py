"""Cron windows in wall-clock time: midnight crossing, weekdays, DST gaps and repeats."""

from datetime import UTC, datetime

import pytest

from modelfleet.api.cron import CronError, last_firing_at_or_before, parse_cron, zone
from modelfleet.api.modelpool import Schedule
from modelfleet.plan.scaling.signals import schedule_is_active


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def active(start: str, end: str, tz: str, at: datetime) -> bool:
    return schedule_is_active(Schedule(name="s", start=start, end=end, replicas=1), zone(tz), at)


@pytest.mark.parametrize(
    ("local_hour", "expected"),
    [(21, False), (22, True), (23, True), (0, True), (3, True), (5, True), (6, False), (12, False)],
)
def test_window_crossing_midnight(local_hour, expected):
    at = datetime(2026, 11, 27, local_hour, 30, tzinfo=zone("Asia/Shanghai"))
    assert active("0 22 * * *", "0 6 * * *", "Asia/Shanghai", at) is expected


def test_weekday_window_is_closed_on_weekends_and_evenings():
    shanghai = zone("Asia/Shanghai")
    start, end = "0 8 * * 1-5", "0 20 * * 1-5"
    assert active(start, end, "Asia/Shanghai", datetime(2026, 11, 27, 8, 0, tzinfo=shanghai))
    assert active(start, end, "Asia/Shanghai", datetime(2026, 11, 27, 19, 59, tzinfo=shanghai))
    assert not active(start, end, "Asia/Shanghai", datetime(2026, 11, 27, 20, 0, tzinfo=shanghai))
    assert not active(start, end, "Asia/Shanghai", datetime(2026, 11, 27, 7, 59, tzinfo=shanghai))
    assert not active(start, end, "Asia/Shanghai", datetime(2026, 11, 28, 10, 0, tzinfo=shanghai))


def test_start_is_inclusive_at_the_exact_instant():
    at = datetime(2026, 11, 27, 8, 0, 0, tzinfo=zone("Asia/Shanghai"))
    firing = last_firing_at_or_before(parse_cron("0 8 * * *"), zone("Asia/Shanghai"), at)
    assert firing == at


def test_start_and_end_at_the_same_instant_is_not_active():
    assert not active("0 8 * * *", "0 8 * * *", "UTC", utc(2026, 11, 27, 9))


def test_no_firing_within_eight_days_counts_as_never_fired():
    # A yearly start on Jan 1 with an end that never comes: active only for 8 days.
    assert active("0 0 1 1 *", "0 0 30 2 *", "UTC", utc(2026, 1, 8, 23))
    assert not active("0 0 1 1 *", "0 0 30 2 *", "UTC", utc(2026, 1, 9, 1))


def test_berlin_business_hours_follow_daylight_saving():
    start, end = "0 8 * * *", "0 20 * * *"
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST. 06:30 UTC is 07:30 CET the day
    # before (closed) and 08:30 CEST on the day (open).
    assert not active(start, end, "Europe/Berlin", utc(2026, 3, 28, 6, 30))
    assert active(start, end, "Europe/Berlin", utc(2026, 3, 29, 6, 30))
    # The window closes at 20:00 local: 18:00 UTC in summer.
    assert not active(start, end, "Europe/Berlin", utc(2026, 3, 29, 18, 0))
    assert active(start, end, "Europe/Berlin", utc(2026, 3, 28, 18, 59))


def test_firing_inside_a_spring_forward_gap_happens_when_the_gap_ends():
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never exists.
    firing = last_firing_at_or_before(
        parse_cron("30 2 * * *"), zone("America/New_York"), utc(2026, 3, 8, 12)
    )
    assert firing == utc(2026, 3, 8, 7, 0)


def test_firing_inside_a_fall_back_hour_happens_once_at_its_first_occurrence():
    # New York, 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    cron, tz = parse_cron("30 1 * * *"), zone("America/New_York")
    assert last_firing_at_or_before(cron, tz, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)
    assert last_firing_at_or_before(cron, tz, utc(2026, 11, 1, 5, 29)) == utc(2026, 10, 31, 5, 30)


def test_day_of_month_and_day_of_week_both_restricted_means_either():
    cron = parse_cron("0 0 1 * 1")  # the 1st of the month, or any Monday
    assert cron.matches_day(datetime(2026, 12, 1).date())  # a Tuesday, the 1st
    assert cron.matches_day(datetime(2026, 11, 30).date())  # a Monday
    assert not cron.matches_day(datetime(2026, 12, 2).date())


@pytest.mark.parametrize(
    "expression", ["0 25 * * *", "* * *", "0 8 * * 1-5 2026", "0 8 L * *", "every day"]
)
def test_bad_cron_is_refused_with_a_hint(expression):
    with pytest.raises(CronError, match="field|L, W"):
        parse_cron(expression)


def test_macros_and_names():
    assert parse_cron("@daily").hours == (0,)
    assert parse_cron("0 8 * JAN-MAR MON-FRI").days_of_week == frozenset({1, 2, 3, 4, 5})
    assert parse_cron("0 8 * * 7").days_of_week == frozenset({0})
