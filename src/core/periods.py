"""Quota-period arithmetic for usage plans: period bounds, the days in a period, and the first-period offset.

Pure functions (no AWS), shared by the quota monitor and the offline API Gateway emulation.

AWS documents DAY, WEEK and MONTH quota periods (QuotaSettings.period) but not where a WEEK starts.
DAY and MONTH reset at the start of the UTC day and month. For WEEK we choose the ISO week:
Monday 00:00 UTC to the next Monday 00:00 UTC. This is an assumption, not a documented AWS fact.

QuotaSettings.offset is documented as "the number of requests subtracted from the given limit in the
initial time period". We take the initial period to be the one containing the usage plan's creation
time; every later period gets the full limit.
"""

from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

QuotaPeriod = Literal["DAY", "WEEK", "MONTH"]
QUOTA_PERIODS: tuple[QuotaPeriod, ...] = get_args(QuotaPeriod)


def parse_quota_period(value: str) -> QuotaPeriod:
    """Return `value` as a QuotaPeriod, or raise ValueError for anything AWS would not accept."""
    for period in QUOTA_PERIODS:
        if value == period:
            return period
    raise ValueError(f"quota period must be one of {', '.join(QUOTA_PERIODS)}, got {value!r}")


def period_bounds(period: QuotaPeriod, at: datetime) -> tuple[datetime, datetime]:
    """The quota period containing `at`: (start inclusive, reset exclusive), both tz-aware UTC."""
    day_start = datetime.combine(_utc(at).date(), datetime.min.time(), tzinfo=UTC)
    if period == "DAY":
        return day_start, day_start + timedelta(days=1)
    if period == "WEEK":
        start = day_start - timedelta(days=day_start.weekday())
        return start, start + timedelta(weeks=1)
    start = day_start.replace(day=1)
    return start, start + timedelta(days=monthrange(start.year, start.month)[1])


def period_key(start: datetime) -> str:
    """A period start as the metering table's sort keys spell it (`PERIOD#<this>`, `QUOTA#<this>`):
    ISO 8601 UTC to the second with a `Z`, e.g. `2026-03-01T00:00:00Z`."""
    return _utc(start).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_bucket(period: QuotaPeriod, at: datetime) -> datetime:
    """The start of the slice of its quota period that `at` falls in, for a chart of the period so far: its UTC
    hour in a DAY period, its UTC day in a WEEK or MONTH period."""
    at = _utc(at)
    if period == "DAY":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def days_in_period(period: QuotaPeriod, at: datetime) -> list[date]:
    """Every UTC calendar day of the quota period containing `at`, in order."""
    start, reset = period_bounds(period, at)
    return [(start + timedelta(days=n)).date() for n in range((reset - start).days)]


def is_first_period(period: QuotaPeriod, plan_created_at: datetime, at: datetime) -> bool:
    """Whether `at` falls in the same quota period as the plan's creation (where the offset applies)."""
    return period_bounds(period, plan_created_at)[0] == period_bounds(period, at)[0]


def effective_limit(limit: int, offset: int, is_first_period: bool) -> int:
    """The quota for one period: the limit, minus the offset in the first period only, never below zero."""
    if limit < 0 or offset < 0:
        raise ValueError("quota limit and offset must not be negative")
    return max(limit - offset, 0) if is_first_period else limit


def _utc(at: datetime) -> datetime:
    # A naive datetime would silently be read as local time; quota periods are UTC by definition.
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return at.astimezone(UTC)
