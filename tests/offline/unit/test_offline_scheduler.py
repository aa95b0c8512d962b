"""The offline scheduler: EventBridge schedule expressions, the events it sends, and when it fires."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offline.functions import FunctionSpec
from offline.scheduler import (
    Cron,
    Rate,
    ScheduledInvocation,
    ScheduleError,
    Scheduler,
    parse_expression,
    scheduled_invocations,
)

TUESDAY_NOON = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800)],
)
def test_rate_expressions(text: str, seconds: int) -> None:
    assert parse_expression(text) == Rate(seconds)


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        # every 15 minutes
        ("cron(0/15 * * * ? *)", TUESDAY_NOON, datetime(2026, 3, 10, 12, 15, tzinfo=UTC)),
        # 08:30 UTC on weekdays (EventBridge counts SUN=1 ... SAT=7)
        ("cron(30 8 ? * MON-FRI *)", TUESDAY_NOON, datetime(2026, 3, 11, 8, 30, tzinfo=UTC)),
        ("cron(30 8 ? * 2-6 *)", datetime(2026, 3, 13, 9, 0, tzinfo=UTC), datetime(2026, 3, 16, 8, 30, tzinfo=UTC)),
        # midnight on the first of the month
        ("cron(0 0 1 * ? *)", TUESDAY_NOON, datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
        # Sundays at 23:00, in one year only
        ("cron(0 23 ? * SUN 2027)", TUESDAY_NOON, datetime(2027, 1, 3, 23, 0, tzinfo=UTC)),
    ],
)
def test_cron_expressions_fire_at_the_next_matching_minute(text: str, after: datetime, expected: datetime) -> None:
    expression = parse_expression(text)
    assert isinstance(expression, Cron)
    assert expression.next_after(after) == expected


@pytest.mark.parametrize(
    "text",
    [
        "rate(0 minutes)",
        "rate(1 minutes)",  # EventBridge wants the singular for 1
        "rate(5 minute)",
        "rate(5 seconds)",
        "cron(0 12 * * * *)",  # one of day-of-month and day-of-week must be ?
        "cron(0 12 * *)",
        "cron(0 12 L * ? *)",
        "cron(0 25 * * ? *)",
        "at(2026-03-10T12:00:00)",
        "every day",
    ],
)
def test_expressions_the_scheduler_cannot_run_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_expression(text)


def spec(events: dict[str, Any]) -> FunctionSpec:
    return FunctionSpec(
        "MonitorFunction", "stack-MonitorFunction", "m.handler", Path("."), 3, 128, "eu-west-1", {}, events
    )


def test_schedule_events_carry_eventbridge_payloads() -> None:
    # Given a function with a Schedule event, a ScheduleV2 event, and one with a fixed Input
    events = {
        "Rule": {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}},
        "Scheduler": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(1 hour)"}},
        "WithInput": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)", "Input": '{"k": 1}'}},
        "Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)", "Enabled": False}},
        "Api": {"Type": "Api", "Properties": {"Path": "/x", "Method": "get"}},
    }

    # When the schedules are read
    found = {item.event_name: item for item in scheduled_invocations({"MonitorFunction": spec(events)}, "stack")}

    # Then each sends what its EventBridge flavour sends, and the disabled one is known but off
    assert set(found) == {"Rule", "Scheduler", "WithInput", "Off"}
    rule_event = found["Rule"].payload(TUESDAY_NOON)
    assert rule_event["detail-type"] == "Scheduled Event"
    assert rule_event["source"] == "aws.events"
    assert rule_event["time"] == "2026-03-10T12:00:30Z"
    assert rule_event["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/stack-MonitorFunction-Rule"]
    assert found["Scheduler"].payload(TUESDAY_NOON) == {}
    assert found["WithInput"].payload(TUESDAY_NOON) == {"k": 1}
    assert not found["Off"].enabled


class Clock:
    def __init__(self) -> None:
        self.now = TUESDAY_NOON

    def __call__(self) -> datetime:
        return self.now


def test_the_scheduler_fires_each_enabled_schedule_when_due_and_then_one_period_later() -> None:
    # Given a 5-minute schedule and a disabled one, on a clock the test moves
    clock = Clock()
    ran: list[tuple[str, Any]] = []
    every_five = ScheduledInvocation("F", "Rule", "rate(5 minutes)", Rate(300), True, lambda at: {"at": at})
    disabled = ScheduledInvocation("G", "Off", "rate(1 minute)", Rate(60), False, lambda at: {})
    scheduler = Scheduler([every_five, disabled], lambda item, event: ran.append((item.function_id, event)), clock)

    # When time passes
    assert scheduler.run_due() == 0  # nothing is due at start: a new rule first fires one period later
    clock.now += timedelta(minutes=5)
    assert scheduler.run_due() == 1
    clock.now += timedelta(minutes=4)
    assert scheduler.run_due() == 0
    clock.now += timedelta(minutes=1)
    assert scheduler.run_due() == 1

    # Then only the enabled schedule ran, each time with the event of its due time
    assert ran == [
        ("F", {"at": TUESDAY_NOON + timedelta(minutes=5)}),
        ("F", {"at": TUESDAY_NOON + timedelta(minutes=10)}),
    ]
