"""Quota standings from GetUsage's numbers, the exhaustion projection, thresholds, and the period keys the
metering table uses. Period arithmetic itself (DAY/WEEK/MONTH, month ends, leap years, offset) is in
test_periods.py; here it is exercised the way the monitor uses it."""

from datetime import UTC, datetime, timedelta

import pytest

from core.periods import QuotaPeriod, effective_limit, is_first_period, period_bounds, period_key
from core.quota.standing import (
    Outlook,
    PlanUsage,
    QuotaStanding,
    TokenCounters,
    plan_usage,
    project,
    standing,
    summarise,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


MID_MARCH = utc(2026, 3, 11)


def a_standing(
    used: int,
    remaining: int,
    *,
    plan_limit: int = 1000,
    period: QuotaPeriod = "MONTH",
    as_of: datetime = MID_MARCH,
    tokens: TokenCounters | None = None,
    token_budget: int | None = None,
) -> QuotaStanding:
    return standing(
        PlanUsage("k1", used, remaining),
        tier="free",
        period=period,
        bounds=period_bounds(period, as_of),
        as_of=as_of,
        plan_limit=plan_limit,
        tokens=tokens,
        token_budget=token_budget,
    )


def test_usage_sums_the_days_and_takes_todays_remaining() -> None:
    # Given GetUsage's daily pairs from the period start to today
    daily = [[10, 990], [0, 990], [25, 965]]

    # When they are read as one key's usage
    usage = plan_usage("k1", daily)

    # Then used is the period's total and remaining is today's
    assert usage == PlanUsage("k1", used=35, remaining=965)


def test_a_key_listed_without_days_has_nothing_left_to_report() -> None:
    assert plan_usage("k1", []) == PlanUsage("k1", used=0, remaining=0)


@pytest.mark.parametrize(
    ("used", "remaining", "expected"),
    [
        # Plain: used + remaining is the plan's limit (1000).
        (800, 200, (800, 1000, 80.0)),
        # An extension (UpdateUsage raised remaining by 1000): the allowance grows, the share falls.
        (900, 1100, (900, 2000, 45.0)),
        # Usage carried over from another plan (a tier move): nothing used here, most of it gone.
        (0, 100, (900, 1000, 90.0)),
        # Quota taken away: used up, whatever this plan counted.
        (10, 0, (1000, 1000, 100.0)),
        # The first period's offset (200) counts as consumed: 100 of 1000 are left.
        (700, 100, (900, 1000, 90.0)),
    ],
)
def test_consumed_and_allowance_follow_what_api_gateway_still_admits(
    used: int, remaining: int, expected: tuple[int, int, float]
) -> None:
    # Given GetUsage's numbers for a key of a plan with a quota of 1000
    # When its standing is worked out
    item = a_standing(used, remaining, plan_limit=1000)

    # Then consumed + remaining is the allowance, whatever happened to the quota
    assert (item.consumed, item.limit, item.request_utilisation) == pytest.approx(expected)
    assert item.consumed + item.remaining == item.limit


def test_first_period_offset_rule_is_the_offline_stacks() -> None:
    # Given a plan created mid-month with limit 1000 and offset 200
    created = utc(2026, 3, 10, 12)
    # When the monitor reads a key with nothing used in that first month
    first = a_standing(0, effective_limit(1000, 200, is_first_period("MONTH", created, utc(2026, 3, 11))))
    # Then the 200 requests the offset took are shown as consumed, and the next month starts clean
    assert (first.consumed, first.remaining) == (200, 800)
    later = a_standing(0, effective_limit(1000, 200, is_first_period("MONTH", created, utc(2026, 4, 2))))
    assert (later.consumed, later.remaining) == (0, 1000)


def test_thresholds_use_exact_arithmetic_and_report_only_the_highest() -> None:
    # 799/1000 is below 80%, 800/1000 is exactly 80%
    assert a_standing(799, 201).highest_threshold((50, 80, 95, 100)) == 50
    assert a_standing(800, 200).highest_threshold((50, 80, 95, 100)) == 80
    # A key that jumps from nothing to exhausted reached only 100
    assert a_standing(1000, 0).highest_threshold((50, 80, 95, 100)) == 100
    assert a_standing(499, 501).highest_threshold((50, 80, 95, 100)) is None


def test_token_budget_can_reach_a_threshold_before_requests_do() -> None:
    # Given a key at 10% of its requests but 96% of its token budget
    item = a_standing(
        100, 900, tokens=TokenCounters(prompt_tokens=60_000, completion_tokens=36_000), token_budget=100_000
    )

    # Then its utilisation is the higher of the two, and 95 is reached
    assert item.request_utilisation == pytest.approx(10.0)
    assert item.token_utilisation == pytest.approx(96.0)
    assert item.utilisation == pytest.approx(96.0)
    assert item.highest_threshold((50, 80, 95, 100)) == 95


def test_without_a_budget_or_a_ledger_tokens_do_not_count() -> None:
    no_budget = a_standing(100, 900, tokens=TokenCounters(prompt_tokens=10**9))
    no_ledger = a_standing(100, 900, token_budget=1000)

    assert no_budget.token_utilisation is None and no_ledger.token_utilisation is None
    assert no_budget.highest_threshold((50,)) is None


@pytest.mark.parametrize(
    ("used", "remaining", "as_of", "expected"),
    [
        # 10 days into March, 500 used: 50/day, 500 left -> 10 more days.
        (500, 500, utc(2026, 3, 11), utc(2026, 3, 21)),
        # Same rate, 2000 left: 40 days, after the reset on April 1: not this period.
        (500, 2000, utc(2026, 3, 11), None),
        # Exhausted: now.
        (1000, 0, utc(2026, 3, 11), utc(2026, 3, 11)),
        # Nothing used yet: no rate to project from.
        (0, 1000, utc(2026, 3, 11), None),
        # The very start of the period: no elapsed time.
        (5, 995, utc(2026, 3, 1), None),
    ],
)
def test_projection_is_linear_at_the_periods_rate_so_far(
    used: int, remaining: int, as_of: datetime, expected: datetime | None
) -> None:
    start, reset = period_bounds("MONTH", as_of)

    assert project(used, remaining, start, reset, as_of).at == expected


def test_projection_on_a_daily_quota_in_a_leap_february() -> None:
    # Given a DAY quota at noon on 2028-02-29 with 600 of 1000 used (50 an hour)
    as_of = utc(2028, 2, 29, 12)
    item = a_standing(600, 400, period="DAY", as_of=as_of)

    # Then it runs out at 20:00, before the reset at midnight into March 1
    assert item.resets_at == utc(2028, 3, 1)
    assert item.projection().at == as_of + timedelta(hours=8)


def test_projection_on_a_weekly_quota_crossing_the_year() -> None:
    # 2026-12-28 is a Monday; Thursday noon is 3.5 days in, 350 used: 100/day, 100 left -> one more day
    as_of = utc(2026, 12, 31, 12)
    item = a_standing(350, 100, period="WEEK", as_of=as_of)

    assert (item.period_start, item.resets_at) == (utc(2026, 12, 28), utc(2027, 1, 4))
    assert item.projection().at == utc(2027, 1, 1, 12)


@pytest.mark.parametrize(
    ("used", "remaining", "as_of", "active_since"),
    [
        # A daily quota, 800 of 1000 used in the first five minutes of the day.
        (800, 200, utc(2026, 3, 11, 0, 5), None),
        # A month well under way, but the key was created ten minutes ago and used 800 since.
        (800, 200, utc(2026, 3, 11, 12), utc(2026, 3, 11, 11, 50)),
        # 59 minutes 59 seconds of usage: still under the hour.
        (800, 200, utc(2026, 3, 11, 12), utc(2026, 3, 11, 11, 0, 1)),
        # Hours of period, but only 9 requests: an average over so few says nothing about the rate.
        (9, 1, utc(2026, 3, 11, 12), None),
    ],
)
def test_no_time_is_claimed_when_the_usage_spans_too_little_time_or_too_few_requests(
    used: int, remaining: int, as_of: datetime, active_since: datetime | None
) -> None:
    # Given a key whose usage so far covers less than an hour, or fewer than 10 requests
    start, reset = period_bounds("DAY" if as_of.hour == 0 else "MONTH", as_of)

    # When its exhaustion is projected
    projection = project(used, remaining, start, reset, as_of, active_since=active_since)

    # Then it is "too early to tell", with no time
    assert (projection.outlook, projection.at) == (Outlook.TOO_EARLY, None)


def test_a_projection_less_than_an_hour_ahead_is_very_soon_without_a_time() -> None:
    # Given a daily quota at noon, 1200 requests used so far (100 an hour)
    as_of = utc(2026, 3, 11, 12)
    start, reset = period_bounds("DAY", as_of)

    # When 99 are left (59.4 minutes at that rate)
    soon = project(1200, 99, start, reset, as_of)

    # Then it runs out "soon", with no time claimed: readings lag and runs are minutes apart
    assert (soon.outlook, soon.at) == (Outlook.SOON, None)
    # And with 100 left (exactly an hour) the time is given
    in_an_hour = project(1200, 100, start, reset, as_of)
    assert (in_an_hour.outlook, in_an_hour.at) == (Outlook.AT, as_of + timedelta(hours=1))


def test_exactly_an_hour_and_ten_requests_are_enough_to_project() -> None:
    # Given a key created exactly an hour ago that used 10 requests (10 an hour), 20 left
    as_of = utc(2026, 3, 11, 12)
    start, reset = period_bounds("MONTH", as_of)
    projection = project(10, 20, start, reset, as_of, active_since=as_of - timedelta(hours=1))

    # Then the time is projected from that hour, not from the month's start
    assert (projection.outlook, projection.at) == (Outlook.AT, as_of + timedelta(hours=2))


def test_an_exhausted_key_is_out_now_and_an_idle_one_not_this_period() -> None:
    # Given a daily quota one minute into the day
    as_of = utc(2026, 3, 11, 0, 1)
    start, reset = period_bounds("DAY", as_of)

    # Then a key with nothing left is out now, however short its usage, and one with nothing used is not
    exhausted = project(10, 0, start, reset, as_of)
    assert (exhausted.outlook, exhausted.at) == (Outlook.EXHAUSTED, as_of)
    assert project(0, 1000, start, reset, as_of).outlook is Outlook.NOT_BEFORE_RESET


def test_period_keys_are_iso_utc_to_the_second() -> None:
    start, _ = period_bounds("MONTH", utc(2026, 2, 14, 8, 30))

    assert period_key(start) == "2026-02-01T00:00:00Z"


def test_summary_per_tier_counts_keys_over_each_threshold() -> None:
    # Given three keys of one tier at 10%, 85% and 100%, and a tier without keys
    standings = [a_standing(100, 900), a_standing(850, 150), a_standing(1000, 0)]

    # When summarised
    summaries = {summary.tier: summary for summary in summarise(["free", "pro"], standings, (50, 80, 95, 100))}

    # Then counts are cumulative per threshold, and the empty tier reads zero
    free = summaries["free"]
    assert (free.keys, free.requests, free.max_utilisation) == (3, 1950, 100.0)
    assert free.over_threshold == {50: 2, 80: 2, 95: 1, 100: 1}
    assert summaries["pro"].keys == 0 and summaries["pro"].over_threshold == {50: 0, 80: 0, 95: 0, 100: 0}
