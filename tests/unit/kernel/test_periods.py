"""Quota-period arithmetic: UTC day, ISO week and calendar month boundaries, and the first-period offset."""

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise

import pytest

from core.periods import (
    QUOTA_PERIODS,
    days_in_period,
    effective_limit,
    is_first_period,
    parse_quota_period,
    period_bounds,
    usage_bucket,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "at", "start", "reset"),
    [
        ("DAY", utc(2026, 3, 14, 0, 0), utc(2026, 3, 14), utc(2026, 3, 15)),
        ("DAY", utc(2026, 3, 14, 23, 59, 59, 999999), utc(2026, 3, 14), utc(2026, 3, 15)),
        ("DAY", utc(2026, 12, 31, 12), utc(2026, 12, 31), utc(2027, 1, 1)),
        # 2026-03-16 is a Monday.
        ("WEEK", utc(2026, 3, 16, 0, 0), utc(2026, 3, 16), utc(2026, 3, 23)),
        ("WEEK", utc(2026, 3, 22, 23, 59, 59), utc(2026, 3, 16), utc(2026, 3, 23)),
        ("WEEK", utc(2027, 1, 1), utc(2026, 12, 28), utc(2027, 1, 4)),
        ("MONTH", utc(2026, 1, 31, 23, 59), utc(2026, 1, 1), utc(2026, 2, 1)),
        ("MONTH", utc(2026, 4, 30, 12), utc(2026, 4, 1), utc(2026, 5, 1)),
        ("MONTH", utc(2026, 12, 15), utc(2026, 12, 1), utc(2027, 1, 1)),
        ("MONTH", utc(2027, 2, 28, 23), utc(2027, 2, 1), utc(2027, 3, 1)),
        ("MONTH", utc(2028, 2, 29, 23, 59, 59), utc(2028, 2, 1), utc(2028, 3, 1)),
    ],
)
def test_period_bounds(period: str, at: datetime, start: datetime, reset: datetime) -> None:
    # Given a quota period and an instant
    # When the bounds are computed
    bounds = period_bounds(parse_quota_period(period), at)

    # Then the instant lies in [start, reset) and both are UTC
    assert bounds == (start, reset)
    assert bounds[0] <= at < bounds[1]
    assert bounds[0].tzinfo is UTC and bounds[1].tzinfo is UTC


def test_midnight_starts_the_next_day_and_the_instant_before_ends_the_previous() -> None:
    midnight = utc(2026, 6, 2)

    assert period_bounds("DAY", midnight)[0] == midnight
    assert period_bounds("DAY", midnight - timedelta(microseconds=1))[1] == midnight


def test_week_resets_at_monday_midnight_utc() -> None:
    sunday_last_instant = utc(2026, 3, 22, 23, 59, 59, 999999)
    monday = utc(2026, 3, 23)

    assert period_bounds("WEEK", sunday_last_instant)[1] == monday
    assert period_bounds("WEEK", monday)[0] == monday
    assert monday.weekday() == 0


def test_bounds_are_taken_in_utc_whatever_the_input_timezone() -> None:
    # 2026-03-31 23:30 in UTC-05:00 is already 1 April in UTC.
    late_in_new_york = datetime(2026, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))

    assert period_bounds("MONTH", late_in_new_york) == (utc(2026, 4, 1), utc(2026, 5, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds("DAY", datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("period", "at", "count", "first", "last"),
    [
        ("DAY", utc(2026, 5, 5, 17), 1, date(2026, 5, 5), date(2026, 5, 5)),
        ("WEEK", utc(2026, 5, 7), 7, date(2026, 5, 4), date(2026, 5, 10)),
        ("MONTH", utc(2027, 2, 10), 28, date(2027, 2, 1), date(2027, 2, 28)),
        ("MONTH", utc(2028, 2, 10), 29, date(2028, 2, 1), date(2028, 2, 29)),
        ("MONTH", utc(2026, 7, 31), 31, date(2026, 7, 1), date(2026, 7, 31)),
        ("MONTH", utc(2026, 9, 1), 30, date(2026, 9, 1), date(2026, 9, 30)),
    ],
)
def test_days_in_period(period: str, at: datetime, count: int, first: date, last: date) -> None:
    days = days_in_period(parse_quota_period(period), at)

    assert len(days) == count
    assert (days[0], days[-1]) == (first, last)
    assert all(b - a == timedelta(days=1) for a, b in pairwise(days))


def test_first_period_is_the_one_containing_the_plan_creation() -> None:
    created = utc(2026, 1, 20, 15)

    assert is_first_period("MONTH", created, utc(2026, 1, 31, 23, 59))
    assert not is_first_period("MONTH", created, utc(2026, 2, 1))
    assert is_first_period("DAY", created, utc(2026, 1, 20, 0, 0))
    assert not is_first_period("DAY", created, utc(2026, 1, 21))
    # 2026-01-20 is a Tuesday; its ISO week runs Monday 19 to Sunday 25.
    assert is_first_period("WEEK", created, utc(2026, 1, 19))
    assert not is_first_period("WEEK", created, utc(2026, 1, 26))


def test_offset_is_subtracted_in_the_first_period_only() -> None:
    assert effective_limit(1000, 200, is_first_period=True) == 800
    assert effective_limit(1000, 200, is_first_period=False) == 1000
    assert effective_limit(1000, 0, is_first_period=True) == 1000


def test_offset_larger_than_the_limit_leaves_nothing_rather_than_a_negative_quota() -> None:
    assert effective_limit(10, 25, is_first_period=True) == 0


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        effective_limit(-1, 0, is_first_period=False)
    with pytest.raises(ValueError, match="negative"):
        effective_limit(1, -1, is_first_period=True)


def test_only_aws_quota_periods_parse() -> None:
    assert QUOTA_PERIODS == ("DAY", "WEEK", "MONTH")
    with pytest.raises(ValueError, match="DAY, WEEK, MONTH"):
        parse_quota_period("YEAR")
    with pytest.raises(ValueError):
        parse_quota_period("month")


@pytest.mark.parametrize(
    ("period", "at", "bucket"),
    [
        ("DAY", utc(2026, 3, 10, 14, 25, 59), utc(2026, 3, 10, 14)),
        ("DAY", utc(2026, 3, 10, 0, 0, 0), utc(2026, 3, 10, 0)),
        ("WEEK", utc(2026, 3, 11, 23, 59, 59), utc(2026, 3, 11)),
        ("MONTH", utc(2026, 3, 31, 12), utc(2026, 3, 31)),
    ],
)
def test_usage_buckets_are_hours_of_a_day_and_days_of_a_week_or_month(
    period: str, at: datetime, bucket: datetime
) -> None:
    assert usage_bucket(parse_quota_period(period), at) == bucket


def test_usage_buckets_are_utc_whatever_the_input_timezone() -> None:
    at = datetime(2026, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on the 11th

    assert usage_bucket("MONTH", at) == utc(2026, 3, 11)
    assert usage_bucket("DAY", at) == utc(2026, 3, 11, 4)
