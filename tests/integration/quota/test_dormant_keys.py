"""The dormant-key sweep (DormantKeyDays) on the emulated stack: keys of self-service tiers unused for that many
days are deleted after one notice to their partner, the partner kept as DORMANT; once a day, idempotent, and
safe when killed between its steps (no second notice, no deletion without a notice)."""

from datetime import timedelta
from typing import Any

import boto3
import pytest

from core.adapters.apigateway import ApiGateway
from core.adapters.partners_table import PartnerRecords
from core.adapters.ses import SesEmail
from core.adapters.sns import AlertTopic
from core.models import PartnerStatus
from core.pacing import TokenBucket
from core.quota.adapters.dormant_partners import DormantPartners
from core.quota.adapters.quota_table import QuotaTable
from core.quota.service import QuotaMonitor, RunReport
from tests.fakes import NoMetrics
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.integration.quota.test_quota_monitor import AS_OF, Monitored

DAYS = 30
pytestmark = pytest.mark.usefixtures("monitored")


def sweeping_monitor(monitored: Monitored) -> QuotaMonitor:
    """The monitor as quota_monitor() builds it with DormantKeyDays=30 (free is the self-service tier)."""
    settings = monitored.settings.model_copy(update={"dormant_key_days": DAYS})
    never_waits = TokenBucket(rate=1e9, burst=1e9)
    return QuotaMonitor(
        settings,
        plans=ApiGateway(pacer=never_waits),
        records=QuotaTable(settings.metering_table),
        partners=PartnerRecords(settings.partners_table),
        topic=AlertTopic(settings.alert_topic_arn),
        email=SesEmail(settings.partner_alert_sender),
        tier_metrics=NoMetrics(),
        wall=lambda: monitored.wall,
        operator_pacer=never_waits,
        email_pacer=never_waits,
        dormant=DormantPartners(settings.partners_table),
    )


def run(monitored: Monitored, days_later: int = DAYS + 1) -> RunReport:
    """A run `days_later` days after the partners signed up (AS_OF), the wall clock moved with it."""
    monitored.wall = AS_OF.timestamp() + days_later * 86400
    return sweeping_monitor(monitored).run(as_of=AS_OF + timedelta(days=days_later))


def api_key_ids() -> set[str]:
    return {key["id"] for key in boto3.client("apigateway").get_api_keys(limit=500)["items"]}


def partner(monitored: Monitored, key_id: str) -> dict[str, Any]:
    found = PartnerRecords(monitored.settings.partners_table).get_by_api_key_id(key_id)
    assert found is not None
    item = boto3.client("dynamodb").get_item(
        TableName=monitored.settings.partners_table, Key={"pk": {"S": f"PARTNER#{found.partner_id}"}}
    )["Item"]
    return {"status": item["status"]["S"], "notice": item.get("dormant_notice", {}).get("M", {})}


def notices(monitored: Monitored) -> list[str]:
    return [str(mail["To"]) for mail in monitored.partner_mails() if "unused API key" in str(mail["Subject"])]


def test_a_free_key_unused_for_the_window_is_deleted_after_one_notice(monitored: Monitored) -> None:
    # Given free keys: one unused since signup, one used 10 days ago, and a pro key unused too
    dormant = monitored.partner_key("free", alert_emails=False)
    used = monitored.partner_key("free")
    monitored.use("free", used, 3, day=(AS_OF + timedelta(days=DAYS - 10)).date())
    paid = monitored.partner_key("pro")

    # When the monitor runs DormantKeyDays + 1 days after they signed up
    report = run(monitored)

    # Then the unused free key got its notice (it never asked for alert emails: the notice is transactional),
    # its partner is DORMANT, and the key is gone; the others are untouched
    assert (report.dormant.keys_deleted, report.dormant.notices_sent) == (1, 1)
    assert notices(monitored) == ["dev1@partner.example"]
    assert dormant not in api_key_ids()
    assert {used, paid} <= api_key_ids()
    assert partner(monitored, dormant)["status"] == PartnerStatus.DORMANT
    assert partner(monitored, used)["status"] == PartnerStatus.ACTIVE


def test_a_partner_newer_than_the_window_is_not_dormant(monitored: Monitored) -> None:
    # Given a free key unused since a signup 29 days ago
    key = monitored.partner_key("free")

    # When the monitor runs
    report = run(monitored, days_later=DAYS - 1)

    # Then nothing happens to it
    assert report.dormant.candidates == 0
    assert key in api_key_ids()


def test_the_sweep_runs_once_a_day_and_again_the_next_day(monitored: Monitored) -> None:
    # Given a dormant key, swept today
    monitored.partner_key("free")
    assert run(monitored).dormant.swept

    # When the monitor runs again the same day, then the next
    again = run(monitored)
    next_day = run(monitored, days_later=DAYS + 2)

    # Then the second run of the day does not sweep, and the next day's finds nothing left to do
    assert not again.dormant.swept
    assert next_day.dormant.swept and next_day.dormant.candidates == 0
    assert len(notices(monitored)) == 1


def test_a_sweep_killed_before_deleting_the_key_is_finished_the_next_day_without_a_second_notice(
    monitored: Monitored,
) -> None:
    # Given a sweep killed after the notice and the DORMANT mark, just before DeleteApiKey
    key = monitored.partner_key("free")
    with dies_before("api-gateway", "DeleteApiKey"), pytest.raises(LambdaTimedOut):
        run(monitored)
    assert notices(monitored) == ["dev1@partner.example"]
    assert key in api_key_ids()

    # When the next day's sweep runs
    report = run(monitored, days_later=DAYS + 2)

    # Then it deletes the key, and the partner got no second notice
    assert report.dormant.keys_deleted == 1
    assert key not in api_key_ids()
    assert len(notices(monitored)) == 1


def test_a_sweep_killed_while_sending_the_notice_neither_sends_again_nor_deletes(monitored: Monitored) -> None:
    # Given a sweep killed with the notice claimed, before SES was called (or while: it cannot know)
    key = monitored.partner_key("free")
    with dies_before("ses", "SendEmail"), pytest.raises(LambdaTimedOut):
        run(monitored)

    # When the next day's sweep runs, after the claim's lease
    report = run(monitored, days_later=DAYS + 2)

    # Then the key is kept and no notice is sent (it may have gone out once): the run says so for an operator
    assert report.dormant.notices_unknown == 1
    assert notices(monitored) == []
    assert key in api_key_ids()
    assert partner(monitored, key)["status"] == PartnerStatus.ACTIVE


def test_a_notice_ses_refuses_keeps_the_key_for_good(monitored: Monitored) -> None:
    # Given SES refuses the notice for good (a suppressed address)
    key = monitored.partner_key("free")
    with fails_once("ses", "SendEmail", "MessageRejected"):
        first = run(monitored)

    # When the next day's sweep runs
    second = run(monitored, days_later=DAYS + 2)

    # Then the key stays, and is not tried again
    assert first.dormant.notices_failed == 1
    assert second.dormant.notices_sent == 0 and second.dormant.keys_deleted == 0
    assert key in api_key_ids()


def test_a_notice_ses_could_not_send_is_tried_again_the_next_day(monitored: Monitored) -> None:
    # Given SES fails once for a passing reason (throttled)
    key = monitored.partner_key("free")
    with fails_once("ses", "SendEmail", "Throttling"):
        first = run(monitored)

    # Then nothing went out and the key stays; the day's sweep is not marked done, and the next day's retires it
    assert first.dormant.errors and key in api_key_ids()
    second = run(monitored, days_later=DAYS + 2)
    assert second.dormant.keys_deleted == 1
    assert notices(monitored) == ["dev1@partner.example"]
