"""The quota monitor in-process against the emulated stack provisioned from template.yaml (moto, with AWS's
GetUsage, UpdateUsage and management-API rate limits from offline.apigateway_fidelity). Email lands in a
local outbox exactly as SNS (email subscription) and SES would deliver it."""

import email
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from core.adapters.apigateway import ApiGateway
from core.adapters.audit_trail import AuditTrail
from core.adapters.ledger_requests import LedgerRequests
from core.adapters.partners_table import PartnerRecords
from core.adapters.ses import SesEmail
from core.adapters.sns import AlertTopic
from core.adapters.tier_changes import TierChangeRecords
from core.admin.adapters.ledger import AdminLedger
from core.admin.adapters.partners import AdminPartners
from core.admin.models import Operator
from core.admin.service import AdminService
from core.admin.settings import AdminSettings
from core.errors import QuotaMonitorRunFailed
from core.messages import Message
from core.models import Partner, PartnerStatus
from core.observability import metrics
from core.pacing import TokenBucket
from core.quota.adapters.quota_table import QuotaTable
from core.quota.service import QuotaMonitor, quota_monitor
from core.quota.settings import QuotaMonitorSettings
from core.settings import forget_settings, load_settings
from core.signup.adapters.partners import SignupPartners
from handlers import quota_monitor as quota_monitor_handler
from offline import apigateway_fidelity, outbox
from offline.provision import ProvisionedStack, provision
from offline.template import load_template
from tests.fakes import NoMetrics
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.lambda_events import LambdaContext, sample_event

OPS = "ops@example.com"
SENDER = "alerts@example.com"
# Small quotas so a few recorded requests cross thresholds; a token budget on free.
PARAMS = {
    "AlertEmail": OPS,
    "PartnerAlertSender": SENDER,
    "PartnerSupportContact": "https://acme-api.example/help",
    "FreeQuotaLimit": "10",
    "FreeQuotaPeriod": "DAY",
    "FreeTokenBudget": "1000",
    "ProQuotaLimit": "20",
    "ProQuotaPeriod": "MONTH",
    "EnterpriseQuotaLimit": "100",
    "EnterpriseQuotaPeriod": "WEEK",
}
# A Wednesday at noon: mid-day, mid-week, mid-month.
AS_OF = datetime(2026, 3, 11, 12, tzinfo=UTC)


class FakeClock:
    """Monotonic time for the pacers that only moves when they sleep, and the wall time of each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class RecordingTopic:
    """The real AlertTopic (moto), noting on the pacers' clock when each message went out."""

    def __init__(self, topic: AlertTopic, clock: FakeClock) -> None:
        self._topic = topic
        self._clock = clock
        self.sent_at: list[float] = []

    def publish_message(self, message: Message) -> str:
        self.sent_at.append(self._clock())
        return self._topic.publish_message(message)


@dataclass
class Monitored:
    stack: ProvisionedStack
    settings: QuotaMonitorSettings
    outbox_dir: Path
    clock: FakeClock = field(default_factory=FakeClock)
    wall: float = field(default_factory=lambda: 1_800_000_000.0)
    keys: int = 0

    def monitor(self, apigateway: Any = None, topic: Any = None) -> QuotaMonitor:
        """The monitor as the handler builds it (core.quota.service.quota_monitor), with pacers on a fake clock."""
        settings = self.settings
        pacer = TokenBucket(settings.management_api_rate, settings.management_api_burst, self.clock, self.clock.sleep)
        return QuotaMonitor(
            settings,
            plans=ApiGateway(apigateway, pacer=pacer),
            records=QuotaTable(settings.metering_table),
            partners=PartnerRecords(settings.partners_table),
            topic=topic or AlertTopic(settings.alert_topic_arn),
            email=SesEmail(settings.partner_alert_sender),
            tier_metrics=NoMetrics(),
            wall=lambda: self.wall,
            operator_pacer=TokenBucket(settings.operator_messages_per_second, 1, self.clock, self.clock.sleep),
            email_pacer=TokenBucket(settings.partner_emails_per_second, 1, self.clock, self.clock.sleep),
        )

    def partner_key(self, tier: str, *, alert_emails: bool = True, name: str | None = None) -> str:
        """A key in the tier's plan with its partner record, as signup leaves them."""
        self.keys += 1
        number = self.keys
        apigateway = boto3.client("apigateway")
        key_id = str(apigateway.create_api_key(name=f"key-{number}", enabled=True)["id"])
        apigateway.create_usage_plan_key(usagePlanId=self.stack.plan_ids_by_tier[tier], keyId=key_id, keyType="API_KEY")
        partners = SignupPartners(self.settings.partners_table)
        partner_id = f"p_{number}"
        email_address = f"dev{number}@partner.example"
        reservation = partners.reserve_email(email_address, partner_id, now=0, lease_seconds=60)
        partners.activate(
            Partner(
                partner_id=reservation.partner_id,
                name=name or f"Partner {number}",
                email=email_address,
                tier=tier,
                api_key_id=key_id,
                key_prefix="AbCd",
                status=PartnerStatus.ACTIVE,
                created_at=AS_OF.isoformat(),
                updated_at=AS_OF.isoformat(),
                alert_emails=alert_emails,
                email_confirmed=alert_emails,
            )
        )
        return key_id

    def use(self, tier: str, key_id: str, requests: int, day: date | None = None) -> None:
        """Requests that API Gateway admitted for the key (what GetUsage will count)."""
        apigateway_fidelity.ledger().record(self.stack.plan_ids_by_tier[tier], key_id, day or AS_OF.date(), requests)

    def mails(self) -> list[EmailMessage]:
        return [email.message_from_bytes(path.read_bytes()) for path in sorted(self.outbox_dir.glob("*.eml"))]

    def operator_mails(self) -> list[EmailMessage]:
        return [mail for mail in self.mails() if mail["To"] == OPS]

    def partner_mails(self) -> list[EmailMessage]:
        return [mail for mail in self.mails() if mail["X-Offline-Source"] == "ses"]

    def items(self, prefix: str) -> list[dict[str, Any]]:
        table = boto3.client("dynamodb").scan(TableName=self.settings.metering_table)["Items"]
        return [item for item in table if item["sk"]["S"].startswith(prefix)]


@pytest.fixture
def monitored(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Monitored]:
    template = load_template(overrides=PARAMS)
    apigateway_fidelity.set_management_rate_limits(False)  # CloudFormation's calls are not the account's
    stack = provision(template)
    apigateway_fidelity.set_management_rate_limits(True)
    variables = template.resources["QuotaMonitorFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    # Powertools read the namespace when core.observability was first imported, before this environment.
    monkeypatch.setattr(metrics, "namespace", "MeteredAI")
    forget_settings()
    quota_monitor.cache_clear()
    outbox.install(outbox.Outbox(tmp_path / "outbox"))
    try:
        yield Monitored(stack, load_settings(QuotaMonitorSettings), tmp_path / "outbox")
    finally:
        outbox.uninstall()
        forget_settings()
        quota_monitor.cache_clear()


def subjects(mails: list[EmailMessage]) -> list[str]:
    return sorted(str(mail["Subject"]) for mail in mails)


def text(mail: EmailMessage) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(mail.get_content_charset() or "utf-8")


def test_each_crossed_threshold_alerts_once_and_a_rerun_adds_nothing(monitored: Monitored) -> None:
    # Given a free key (quota 10 a day) at 50%, whose partner opted in to alert emails
    acme = monitored.partner_key("free", name="Acme AI")
    monitored.use("free", acme, 5)

    # When the monitor runs
    report = monitored.monitor().run(as_of=AS_OF)

    # Then operators get one alert for 50%, and the partner its own email
    assert not report.failed
    assert subjects(monitored.operator_mails()) == ["Quota 50% used: Acme AI (free)"]
    partner_mail = monitored.partner_mails()
    assert [(mail["To"], mail["From"], mail["Subject"]) for mail in partner_mail] == [
        ("dev1@partner.example", SENDER, "You have used 50% of your free plan's request quota")
    ]
    operator = monitored.operator_mails()[0]
    assert operator["X-SNS-Attribute-tier"] == "free"
    assert operator["X-SNS-Attribute-threshold"] == "50"
    assert operator["X-SNS-Attribute-partner_id"] == "p_1"

    # When it runs again with nothing new, and then after the key reached 80%
    monitored.monitor().run(as_of=AS_OF)
    monitored.use("free", acme, 3)
    monitored.monitor().run(as_of=AS_OF + timedelta(minutes=15))

    # Then only the 80% alert was added, once to each
    assert subjects(monitored.operator_mails()) == [
        "Quota 50% used: Acme AI (free)",
        "Quota 80% used: Acme AI (free)",
    ]
    assert len(monitored.partner_mails()) == 2
    # And each alert is recorded once for the period, complete
    alerts = monitored.items("ALERT#")
    assert sorted(item["sk"]["S"] for item in alerts) == [
        "ALERT#2026-03-11T00:00:00Z#50",
        "ALERT#2026-03-11T00:00:00Z#80",
    ]
    assert all("sent_at" in item and item["partner_email"]["S"] == "sent" for item in alerts)


def test_the_partners_email_reads_as_an_email_and_sends_them_to_the_support_contact(monitored: Monitored) -> None:
    # Given a free key (quota 10 a day) at 80% by noon; the stack's PartnerSupportContact is a help page
    key = monitored.partner_key("free", name="Acme AI")
    monitored.use("free", key, 8)

    # When the monitor runs
    monitored.monitor().run(as_of=AS_OF)

    # Then the partner's email greets them, gives the numbers with units, the reset, and where to upgrade
    [mail] = monitored.partner_mails()
    body = text(mail)
    assert mail["Subject"] == "You have used 80% of your free plan's request quota"
    for expected in (
        "Hello Acme AI,",
        "has used 80% of its request quota on the free plan today",
        "8 of 10 requests used (80%), 2 left",
        "2026-03-12 00:00 UTC, in 12 hours",
        "HTTP 429",
        "see https://acme-api.example/help",
    ):
        assert expected in body
    # And with 8 requests, too few to extrapolate, no time is claimed for the quota running out
    assert "Requests run out:  too early to tell" in body


@pytest.mark.parametrize(
    "name",
    ["Evil Co\r\nBcc: victim@example.com\r\n\r\nFree money", "Nul\x00 \x1b[31mRed\x1b[0m Co", "Good \u202eoC liveE"],
)
def test_hostile_partner_names_reach_neither_operators_nor_partners_raw(monitored: Monitored, name: str) -> None:
    # Given a partner record whose name carries CR/LF, NUL, an ANSI escape or a bidi override
    key = monitored.partner_key("free", name=name)
    monitored.use("free", key, 5)

    # When the monitor alerts operators (SNS) and the partner (SES)
    report = monitored.monitor().run(as_of=AS_OF)

    # Then both emails arrive with no extra header, and neither subject nor body carries those characters
    assert (report.operator_messages, report.partner_emails_sent) == (1, 1)
    for mail in monitored.mails():
        assert mail["Bcc"] is None
        body = text(mail)
        for hostile in ("\r", "\x00", "\x1b", "\u202e"):
            assert hostile not in str(mail["Subject"]) and hostile not in body
        assert not any(line.startswith(("Bcc:", "Free money")) for line in body.splitlines())


def test_a_key_that_jumps_to_its_limit_gets_one_alert_for_the_highest_threshold(monitored: Monitored) -> None:
    # Given a pro key (quota 20 a month) whose partner did not opt in, from 0 to 100% between two runs
    key = monitored.partner_key("pro", alert_emails=False, name="Jumpy")
    monitored.use("pro", key, 20, day=date(2026, 3, 2))

    # When the monitor runs
    monitored.monitor().run(as_of=AS_OF)

    # Then one alert, for 100%, and no partner email
    assert subjects(monitored.operator_mails()) == ["Quota 100% used: Jumpy (pro)"]
    assert "now: the quota is used up until the reset" in monitored.operator_mails()[0].get_payload()
    assert monitored.partner_mails() == []
    assert [item["sk"]["S"] for item in monitored.items("ALERT#")] == ["ALERT#2026-03-01T00:00:00Z#100"]
    assert monitored.items("ALERT#")[0]["partner_email"]["S"] == "not_requested"


def test_two_overlapping_runs_send_each_alert_once(monitored: Monitored) -> None:
    # Given three keys past a threshold
    keys = [monitored.partner_key("free") for _ in range(3)]
    for key in keys:
        monitored.use("free", key, 9)

    # When two runs go at the same time (a duplicated delivery, or a run overlapping the next)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: monitored.monitor().run(as_of=AS_OF), range(2)))

    # Then each key's 80% alert went out once, to operators and to the partner, saying the 90% it is at
    assert subjects(monitored.operator_mails()) == sorted(f"Quota 90% used: Partner {n} (free)" for n in (1, 2, 3))
    assert len(monitored.partner_mails()) == 3
    assert sum(report.alerts for report in reports) == 3
    assert not any(report.failed for report in reports)


def test_a_new_quota_period_rearms_the_alerts(monitored: Monitored) -> None:
    # Given a free key (DAY quota) alerted at 50% today
    key = monitored.partner_key("free", name="Daily")
    monitored.use("free", key, 5)
    monitored.monitor().run(as_of=AS_OF)

    # When the next day it reaches 50% again
    tomorrow = AS_OF + timedelta(days=1)
    monitored.use("free", key, 6, day=tomorrow.date())
    monitored.monitor().run(as_of=tomorrow)

    # Then it is alerted again, for the new period
    assert subjects(monitored.operator_mails()) == ["Quota 50% used: Daily (free)", "Quota 60% used: Daily (free)"]
    assert sorted(item["sk"]["S"] for item in monitored.items("ALERT#")) == [
        "ALERT#2026-03-11T00:00:00Z#50",
        "ALERT#2026-03-12T00:00:00Z#50",
    ]


def test_five_hundred_keys_crossing_at_once_reach_operators_as_a_paced_digest(monitored: Monitored) -> None:
    # Given 500 enterprise keys (quota 100 a week) all past 95% in one run: the first run of a period, or a
    # mass overrun. Created with the management limits off: this is the test's setup, not the monitor's.
    apigateway = boto3.client("apigateway")
    plan_id = monitored.stack.plan_ids_by_tier["enterprise"]
    apigateway_fidelity.set_management_rate_limits(False)
    keys = []
    for number in range(500):
        key_id = apigateway.create_api_key(name=f"bulk-{number}", enabled=True)["id"]
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
        keys.append(key_id)
    apigateway_fidelity.set_management_rate_limits(True)
    for key_id in keys:
        monitored.use("enterprise", key_id, 96)
    topic = RecordingTopic(AlertTopic(monitored.settings.alert_topic_arn), monitored.clock)

    # When the monitor runs
    report = monitored.monitor(topic=topic).run(as_of=AS_OF)

    # Then operators get a few digests, never more than 10 messages in any second
    assert report.digests == len(topic.sent_at) == 5
    assert max(sum(1 for t in topic.sent_at if start <= t < start + 1) for start in topic.sent_at) <= 10
    # And no crossing is lost: every key is listed once, and recorded as sent
    bodies = "\n".join(str(mail.get_payload()) for mail in monitored.operator_mails())
    assert all(bodies.count(f"key {key_id}), ") == 1 for key_id in keys)
    alerts = monitored.items("ALERT#")
    assert len(alerts) == 500 and all("sent_at" in item for item in alerts)
    assert report.alerts == 500 and not report.failed


def test_a_throttled_plan_is_reported_and_the_other_plans_are_still_evaluated(
    monitored: Monitored, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given keys over a threshold in every tier, and API Gateway throttling every GetUsage of the pro plan
    # and not finding the enterprise plan (deleted between the listing and the read)
    free = monitored.partner_key("free", name="Free Co")
    pro = monitored.partner_key("pro", name="Pro Co")
    enterprise = monitored.partner_key("enterprise", name="Ent Co")
    monitored.use("free", free, 8)
    monitored.use("pro", pro, 19)
    monitored.use("enterprise", enterprise, 99)
    failing = {
        monitored.stack.plan_ids_by_tier["pro"]: ("TooManyRequestsException", 429),
        monitored.stack.plan_ids_by_tier["enterprise"]: ("NotFoundException", 404),
    }
    # botocore's retries are not what this test is about: one attempt, then the monitor's handling.
    apigateway = boto3.client("apigateway", config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with failing_get_usage(apigateway, failing):
        monkeypatch.setattr(quota_monitor_handler, "quota_monitor", lambda: monitored.monitor(apigateway))

        # When the scheduled run happens
        with pytest.raises(QuotaMonitorRunFailed) as failed:
            quota_monitor_handler.handler(
                {"scheduled_time": "2026-03-11T12:00:00Z"}, LambdaContext(function_name="QuotaMonitorFunction")
            )

    # Then free was evaluated and alerted, and the run failed naming the two plans (Lambda retries it)
    assert subjects(monitored.operator_mails()) == ["Quota 80% used: Free Co (free)"]
    assert "pro" in failed.value.message and "enterprise" in failed.value.message
    assert [item["pk"]["S"] for item in monitored.items("QUOTA#")] == [f"KEY#{free}"]


def test_an_alert_sns_refused_is_released_and_sent_by_the_next_run(monitored: Monitored) -> None:
    # Given a key past 50%, and SNS refusing the first publish (not a throttle: botocore does not retry it)
    key = monitored.partner_key("free", name="Retry Co")
    monitored.use("free", key, 6)

    # When the run fails to publish
    with fails_once("sns", "Publish", "KMSDisabled"):
        first = monitored.monitor().run(as_of=AS_OF)

    # Then the run reports it, the claim is given back, and nobody got mail
    assert first.failed and first.undelivered == 1
    assert monitored.items("ALERT#") == []
    assert monitored.mails() == []

    # And the next run sends it, once
    second = monitored.monitor().run(as_of=AS_OF)
    assert not second.failed
    assert subjects(monitored.operator_mails()) == ["Quota 60% used: Retry Co (free)"]
    assert len(monitored.partner_mails()) == 1


def test_a_run_killed_after_telling_operators_is_finished_by_a_later_run_without_repeating(
    monitored: Monitored,
) -> None:
    # Given a key past 50%, and the function killed just before it emails the partner
    key = monitored.partner_key("free", name="Killed Co")
    monitored.use("free", key, 5)
    with dies_before("ses", "SendEmail"), pytest.raises(LambdaTimedOut):
        monitored.monitor().run(as_of=AS_OF)
    assert len(monitored.operator_mails()) == 1 and monitored.partner_mails() == []

    # When a run comes while the dead run's claim is still leased, and another after the lease
    monitored.monitor().run(as_of=AS_OF)
    assert monitored.partner_mails() == []
    monitored.wall += monitored.settings.alert_claim_seconds + 1
    monitored.monitor().run(as_of=AS_OF)

    # Then the partner gets its email, and operators are not told twice
    assert len(monitored.partner_mails()) == 1
    assert len(monitored.operator_mails()) == 1
    assert "sent_at" in monitored.items("ALERT#")[0]


def test_a_partner_email_ses_refuses_is_not_retried_and_operators_still_hear(monitored: Monitored) -> None:
    key = monitored.partner_key("free", name="Bounced Co")
    monitored.use("free", key, 5)

    with fails_once("ses", "SendEmail", "MessageRejected"):
        report = monitored.monitor().run(as_of=AS_OF)
    monitored.monitor().run(as_of=AS_OF)

    assert (report.partner_emails_failed, report.failed) == (1, False)
    assert len(monitored.operator_mails()) == 1
    assert monitored.partner_mails() == []
    assert monitored.items("ALERT#")[0]["partner_email"]["S"] == "failed"


def test_token_budget_crossings_alert_from_the_ai_apis_ledger(monitored: Monitored) -> None:
    # Given a free key with 1 request of 10, but 960 of its 1000 tokens used (the AI API's ledger item)
    key = monitored.partner_key("free", name="Tokens Co")
    monitored.use("free", key, 1)
    boto3.client("dynamodb").put_item(
        TableName=monitored.settings.metering_table,
        Item={
            "pk": {"S": f"KEY#{key}"},
            "sk": {"S": "PERIOD#2026-03-11T00:00:00Z"},
            "requests": {"N": "1"},
            "prompt_tokens": {"N": "400"},
            "completion_tokens": {"N": "560"},
            "reserved_tokens": {"N": "0"},
            "tier": {"S": "free"},
            "partner_id": {"S": "p_1"},
        },
    )

    # When the monitor runs
    monitored.monitor().run(as_of=AS_OF)

    # Then the 95% alert is about the token budget, with the figure reached in subject and body alike
    [mail] = monitored.operator_mails()
    assert mail["Subject"] == "Token budget 96% used: Tokens Co (free)"
    assert "has used 96% of its token budget" in str(mail.get_payload())
    assert "960 of 1,000 tokens used (96%)" in str(mail.get_payload())


def test_readings_are_written_for_the_ai_api_and_only_when_they_change(monitored: Monitored) -> None:
    # Given a used key and an idle one
    used = monitored.partner_key("pro")
    monitored.partner_key("pro")
    monitored.use("pro", used, 3, day=date(2026, 3, 2))

    # When the monitor runs twice with nothing new
    first = monitored.monitor().run(as_of=AS_OF)
    second = monitored.monitor().run(as_of=AS_OF + timedelta(minutes=15))

    # Then the used key has a reading in the contract's shape, written once; the idle key needs none
    [reading] = monitored.items("QUOTA#")
    assert reading["pk"]["S"] == f"KEY#{used}"
    assert reading["sk"]["S"] == "QUOTA#2026-03-01T00:00:00Z"
    assert {name: reading[name]["N"] for name in ("used", "remaining", "limit")} == {
        "used": "3",
        "remaining": "17",
        "limit": "20",
    }
    assert reading["tier"]["S"] == "pro"
    assert reading["as_of"]["S"] == AS_OF.isoformat()
    assert int(reading["expires_at"]["N"]) == int(datetime(2026, 5, 6, tzinfo=UTC).timestamp())
    assert (first.readings_written, second.readings_written) == (1, 0)


def test_an_extension_granted_with_update_usage_lowers_utilisation(monitored: Monitored) -> None:
    # Given a pro key at 18 of 20, then granted 20 more for this period (UpdateUsage)
    key = monitored.partner_key("pro", name="Extended")
    monitored.use("pro", key, 18)
    monitored.monitor().run(as_of=AS_OF)
    apigateway_fidelity.set_wall_clock(lambda: AS_OF)
    try:
        boto3.client("apigateway").update_usage(
            usagePlanId=monitored.stack.plan_ids_by_tier["pro"],
            keyId=key,
            patchOperations=[{"op": "replace", "path": "/remaining", "value": "22"}],
        )
    finally:
        apigateway_fidelity.set_wall_clock(None)

    # When the monitor reads it again
    monitored.monitor().run(as_of=AS_OF + timedelta(minutes=15))

    # Then the reading has the larger allowance and no new alert went out
    [reading] = monitored.items("QUOTA#")
    assert {name: reading[name]["N"] for name in ("used", "remaining", "limit")} == {
        "used": "18",
        "remaining": "22",
        "limit": "40",
    }
    assert subjects(monitored.operator_mails()) == ["Quota 90% used: Extended (pro)"]


def test_an_extension_granted_in_the_operator_console_is_read_as_the_larger_limit(monitored: Monitored) -> None:
    # Given a pro key at 18 of 20 this period
    key = monitored.partner_key("pro", name="Console")
    partner_id = f"p_{monitored.keys}"
    monitored.use("pro", key, 18)
    settings = monitored.settings
    gateway = ApiGateway()
    admin = AdminService(
        AdminSettings(
            stack_name=settings.stack_name,
            partners_table=settings.partners_table,
            metering_table=settings.metering_table,
            alert_topic_arn=settings.alert_topic_arn,
            tiers=settings.tiers,
        ),
        partners=AdminPartners(settings.partners_table),
        audit=AuditTrail(settings.partners_table),
        notifier=AlertTopic(settings.alert_topic_arn),
        keys=gateway,
        plans=gateway,
        tier_state=TierChangeRecords(settings.partners_table),
        counts=LedgerRequests(settings.metering_table),
        ledger=AdminLedger(settings.metering_table),
        clock=AS_OF.timestamp,
    )

    # When an operator grants 20 more requests through the console, and the monitor reads GetUsage
    apigateway_fidelity.set_wall_clock(lambda: AS_OF)
    try:
        admin.extend(Operator(arn="arn:aws:iam::123456789012:user/ops"), partner_id, 20, 0, "launch week")
    finally:
        apigateway_fidelity.set_wall_clock(None)
    monitored.monitor().run(as_of=AS_OF + timedelta(minutes=15))

    # Then its reading has the extended allowance: 18 used of 40
    [reading] = monitored.items("QUOTA#")
    assert {name: reading[name]["N"] for name in ("used", "remaining", "limit")} == {
        "used": "18",
        "remaining": "22",
        "limit": "40",
    }


def test_the_handler_runs_the_schedules_period_and_returns_its_report(monitored: Monitored) -> None:
    # Given a key at 50% on the schedule's day (not today)
    key = monitored.partner_key("free", name="Scheduled")
    monitored.use("free", key, 5)

    # When the scheduler's event (its Input with the context attributes filled in) invokes the handler
    result = quota_monitor_handler.handler(
        sample_event("quota_monitor.json"), LambdaContext(function_name="QuotaMonitorFunction")
    )

    # Then the run evaluated that day's period and alerted
    assert result["as_of"] == AS_OF.isoformat()
    assert result["alerts"] == 1 and result["failed"] is False
    assert result["tiers"] == ["enterprise", "free", "pro"]
    assert subjects(monitored.operator_mails()) == ["Quota 50% used: Scheduled (free)"]


def test_the_handler_publishes_the_accounts_api_keys_for_the_ceiling_alarm(
    monitored: Monitored, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three partners' keys in the account
    for name in ("One", "Two", "Three"):
        monitored.partner_key("free", name=name)
    keys = len(boto3.client("apigateway").get_api_keys(limit=500)["items"])
    capsys.readouterr()

    # When a run ends
    result = quota_monitor_handler.handler(
        sample_event("quota_monitor.json"), LambdaContext(function_name="QuotaMonitorFunction")
    )

    # Then it reports and publishes ApiKeysInAccount, with the stack dimension the alarm filters on
    assert result["api_keys"] == keys >= 3
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [record] = [record for record in records if "ApiKeysInAccount" in record]
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MeteredAI"
    assert "stack" in directive["Dimensions"][0]  # and `service`, from POWERTOOLS_SERVICE_NAME (Globals)
    assert record["ApiKeysInAccount"] in (keys, [float(keys)], float(keys))


def test_ses_identities_of_the_template_are_verified_at_provisioning(aws: None) -> None:
    # Given the template with a partner alert sender
    template = load_template(overrides={"PartnerAlertSender": "alerts@example.com"})

    # When the offline stack provisions it
    stack = provision(template)

    # Then SES accepts that sender, as it would once its owner clicked the verification link
    ses = boto3.client("ses")
    assert "alerts@example.com" in ses.list_identities()["Identities"]
    assert stack.physical_ids["PartnerAlertSenderIdentity"] == "alerts@example.com"
    ses.send_email(
        Source="alerts@example.com",
        Destination={"ToAddresses": ["dev@partner.example"]},
        Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}},
    )


def test_without_a_sender_no_identity_is_made(aws: None) -> None:
    stack = provision(load_template())

    assert "PartnerAlertSenderIdentity" not in stack.physical_ids
    assert boto3.client("ses").list_identities()["Identities"] == []


class failing_get_usage:  # noqa: N801 - a context manager, named like tests.faults' helpers
    """Every GetUsage of the given plans answers the given error, as API Gateway would (through botocore's own
    hook, so the code sees exactly what boto3 raises)."""

    def __init__(self, client: Any, failing: dict[str, tuple[str, int]]) -> None:
        self._failing = failing
        self._events = client.meta.events

    def __enter__(self) -> None:
        self._events.register("before-call.api-gateway.GetUsage", self._answer)

    def __exit__(self, *_: object) -> None:
        self._events.unregister("before-call.api-gateway.GetUsage", self._answer)

    def _answer(self, params: dict[str, Any], **_: Any) -> Any:
        # url_path is /usageplans/<plan id>/usage
        plan_id = str(params.get("url_path", "")).split("/")[2]
        if plan_id not in self._failing:
            return None
        code, status = self._failing[plan_id]
        parsed = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://injected", status, {}, None), parsed  # type: ignore[arg-type]
