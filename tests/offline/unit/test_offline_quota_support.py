"""What the offline stack does for the quota monitor: EventBridge Scheduler's context attributes in a
schedule's Input, and a movable account clock. (SES identities verified at provisioning: see
tests/integration/quota/test_quota_monitor.py.)"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from offline.clock import OfflineClock
from offline.functions import FunctionSpec
from offline.scheduler import scheduled_invocations

NOON = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


def test_a_schedule_v2_input_gets_the_schedulers_context_attributes() -> None:
    # Given a ScheduleV2 event whose Input names the scheduler's context attributes (as the template's does)
    input_text = (
        '{"scheduled_time": "<aws.scheduler.scheduled-time>", "execution_id": "<aws.scheduler.execution-id>", '
        '"attempt": "<aws.scheduler.attempt-number>", "schedule": "<aws.scheduler.schedule-arn>", "fixed": 1}'
    )
    events = {"Runs": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(1 hour)", "Input": input_text}}}
    function = FunctionSpec("Monitor", "stack-Monitor", "m.handler", Path("."), 3, 128, "eu-west-1", {}, events)
    [schedule] = scheduled_invocations({"Monitor": function}, "stack")

    # When it fires twice
    first, second = schedule.payload(NOON), schedule.payload(NOON + timedelta(hours=1))

    # Then each invocation carries its own scheduled time (UTC, to the second, with a Z) and execution id
    assert first["scheduled_time"] == "2026-03-10T12:00:30Z"
    assert second["scheduled_time"] == "2026-03-10T13:00:30Z"
    assert len(first["execution_id"]) == 16 and first["execution_id"] != second["execution_id"]
    assert first["attempt"] == "1"
    assert first["schedule"] == "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/stack-Monitor-Runs"
    assert first["fixed"] == 1


def test_the_account_clock_moves_and_keeps_running() -> None:
    # Given a clock on a fake real time
    real = [datetime(2026, 3, 10, 12, tzinfo=UTC)]
    clock = OfflineClock(lambda: real[0])

    # When it is moved to another day, then real time passes, then it is moved on by an hour
    status, moved = clock.control({"now": "2031-03-11T09:00:00Z"})
    real[0] += timedelta(minutes=5)
    clock.control({"advance_seconds": 3600})

    # Then it reads the moved time plus what passed since
    assert status == 200 and moved["now"] == "2031-03-11T09:00:00+00:00"
    assert clock.now() == datetime(2031, 3, 11, 10, 5, tzinfo=UTC)
    clock.control({"reset": True})
    assert clock.now() == real[0]


@pytest.mark.parametrize("payload", [{"now": "2031-03-11T09:00:00"}, {"now": "soon"}, ["now"]])
def test_the_clock_refuses_a_time_it_cannot_read(payload: object) -> None:
    status, answer = OfflineClock().control(payload)

    assert status == 400
    assert "message" in answer
