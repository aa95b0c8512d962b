"""The quota monitor's decisions with in-memory fakes of its ports: when operators get single messages or a
digest, what happens when the invocation runs out of time, which tiers are read, how the schedule's event
is read. The fakes keep the contracts of what they stand for: GetUsage's daily [used, remaining] pages, and
a claim that succeeds once per alert (DynamoDB's conditional write)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ManagementApiThrottled
from core.models import TierLimits, UsagePlan
from core.pacing import TokenBucket
from core.quota.service import QuotaMonitor
from core.quota.settings import QuotaMonitorSettings
from handlers.scheduled_events import ScheduledRun
from tests.fakes import FakePartners, FakePlans, FakeRecords, NoMetrics, Outbox

AS_OF = datetime(2026, 3, 11, 12, tzinfo=UTC)


def plan(plan_id: str, name: str, limit: int | None) -> UsagePlan:
    quota = {"quota_limit": limit, "quota_period": "DAY"} if limit else {}
    return UsagePlan(id=plan_id, name=name, limits=TierLimits(**quota))


def monitor(plans: FakePlans, outbox: Outbox, records: FakeRecords | None = None, **settings: Any) -> QuotaMonitor:
    values: dict[str, Any] = {
        "stack_name": "stack",
        "partners_table": "partners",
        "metering_table": "metering",
        "alert_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
        **settings,
    }
    never_waits = TokenBucket(rate=1e9, burst=1e9)
    return QuotaMonitor(
        QuotaMonitorSettings.model_validate(values),
        plans=plans,
        records=records or FakeRecords(),
        partners=FakePartners(),
        topic=outbox,
        email=outbox,
        tier_metrics=NoMetrics(),
        operator_pacer=never_waits,
        email_pacer=never_waits,
    )


def crossing(count: int) -> FakePlans:
    return FakePlans([plan("plan-free", "stack-free", 10)], {"plan-free": {f"k{n:02}": 9 for n in range(count)}})


@pytest.mark.parametrize(("crossings", "messages"), [(10, 10), (11, 1)])
def test_up_to_ten_crossings_are_single_messages_and_more_become_a_digest(crossings: int, messages: int) -> None:
    outbox = Outbox()

    report = monitor(crossing(crossings), outbox).run(as_of=AS_OF)

    assert len(outbox.published) == report.operator_messages == messages
    assert report.alerts == crossings
    assert report.digests == (1 if messages == 1 else 0)
    assert len(outbox.emailed) == crossings


def test_partner_emails_left_when_time_runs_out_are_not_lost() -> None:
    # Given three crossings and an invocation with less time left than the reserve
    outbox, records = Outbox(), FakeRecords()

    # When the run comes to the partner emails
    report = monitor(crossing(3), outbox, records).run(as_of=AS_OF, time_left=lambda: 5.0)

    # Then operators were told, the partner emails are deferred (not failed), and their alerts stay open
    assert (report.alerts, report.deferred, report.failed) == (3, 3, False)
    assert outbox.emailed == []
    assert all(state.operator_sent and not state.done for state in records.recorded.values())


def test_tiers_are_this_stacks_plans_with_a_quota() -> None:
    # Given plans of this stack (one without a quota) and of another stack
    plans = FakePlans(
        [plan("p1", "stack-free", 10), plan("p2", "stack-unmetered", None), plan("p3", "other-free", 10)],
        {"p1": {"k1": 1}, "p2": {"k2": 1}, "p3": {"k3": 9}},
    )

    report = monitor(plans, Outbox()).run(as_of=AS_OF)

    assert report.tiers == ["free"]
    assert plans.pages_read == ["p1"]


def test_get_usage_is_read_in_pages_not_per_key() -> None:
    plans = FakePlans([plan("p1", "stack-free", 10)], {"p1": {f"k{n:04}": 1 for n in range(1200)}})

    report = monitor(plans, Outbox()).run(as_of=AS_OF)

    assert report.keys == 1200
    assert plans.pages_read == ["p1"] * 3


def test_each_run_counts_the_accounts_api_keys() -> None:
    # Given an account holding 8,123 API keys (every stack's), two of them in this stack's plan
    plans = FakePlans([plan("p1", "stack-free", 10)], {"p1": {"k1": 1, "k2": 1}})
    plans.api_keys = 8123

    report = monitor(plans, Outbox()).run(as_of=AS_OF)

    # Then the run reports the account's count (the handler publishes it as ApiKeysInAccount)
    assert report.api_keys == 8123
    assert report.as_dict()["api_keys"] == 8123


def test_a_key_count_that_fails_does_not_fail_the_run() -> None:
    # Given GetApiKeys keeps failing (throttled after botocore's retries)
    plans = FakePlans([plan("p1", "stack-free", 10)], {"p1": {"k1": 9}})
    plans.api_keys = ManagementApiThrottled("GetApiKeys")
    outbox = Outbox()

    report = monitor(plans, outbox).run(as_of=AS_OF)

    # Then the count is missing (no metric), and the alerts went out as in any run
    assert report.api_keys is None
    assert (report.alerts, report.failed) == (1, False)


def test_the_schedules_event_gives_the_instant_to_evaluate() -> None:
    assert ScheduledRun.model_validate({"scheduled_time": "2026-03-11T12:00:00Z"}).scheduled_at == AS_OF
    # An EventBridge rule's Scheduled Event works too
    assert (
        ScheduledRun.model_validate({"time": "2026-03-11T12:00:00Z", "detail-type": "Scheduled Event"}).scheduled_at
        == AS_OF
    )
    # No time, or the placeholder itself (a test event, sam local invoke): now
    assert ScheduledRun.model_validate({}).scheduled_at is None
    assert ScheduledRun.model_validate({"scheduled_time": "<aws.scheduler.scheduled-time>"}).scheduled_at is None
    with pytest.raises(ValidationError):
        ScheduledRun.model_validate({"scheduled_time": "yesterday"})
    with pytest.raises(ValueError, match="time zone"):
        _ = ScheduledRun.model_validate({"scheduled_time": "2026-03-11T12:00:00"}).scheduled_at


@pytest.mark.parametrize("contact", ["support@acme-api.example", "https://acme-api.example/help", ""])
def test_the_support_contact_is_an_address_a_url_or_nothing(contact: str) -> None:
    # Given the stack's PartnerSupportContact, as the template passes it
    # When the monitor's settings are read
    settings = QuotaMonitorSettings.model_validate(
        {
            "stack_name": "stack",
            "partners_table": "partners",
            "metering_table": "metering",
            "alert_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
            "partner_support_contact": contact,
        }
    )

    # Then it is kept as given
    assert settings.partner_support_contact == contact


@pytest.mark.parametrize("contact", ["javascript:alert(1)", "call us", "help@\r\nBcc: x@example.com"])
def test_a_support_contact_that_is_neither_address_nor_url_is_refused(contact: str) -> None:
    with pytest.raises(ValidationError, match="partner_support_contact"):
        QuotaMonitorSettings.model_validate(
            {
                "stack_name": "stack",
                "partners_table": "partners",
                "metering_table": "metering",
                "alert_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
                "partner_support_contact": contact,
            }
        )
