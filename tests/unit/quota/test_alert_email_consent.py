"""The quota monitor emails a partner only once the partner's address confirmed the signup link."""

from typing import Any

from core.models import Partner
from core.pacing import TokenBucket
from core.quota.service import QuotaMonitor
from core.quota.settings import QuotaMonitorSettings
from tests.fakes import FakePartners, FakeRecords, NoMetrics, Outbox
from tests.unit.quota.test_quota_monitor_service import AS_OF, crossing


class UnconfirmedPartners(FakePartners):
    """Partners who opted in to alert emails at signup and never opened the confirmation link."""

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]:
        found = super().partners_by_api_key_ids(api_key_ids)
        return {key: partner.model_copy(update={"email_confirmed": False}) for key, partner in found.items()}


def test_an_opted_in_partner_whose_address_never_confirmed_gets_no_email() -> None:
    # Given three keys crossing a threshold, whose partners opted in but never confirmed their address
    outbox = Outbox()
    settings: dict[str, Any] = {
        "stack_name": "stack",
        "partners_table": "partners",
        "metering_table": "metering",
        "alert_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
    }
    never_waits = TokenBucket(rate=1e9, burst=1e9)
    monitor = QuotaMonitor(
        QuotaMonitorSettings.model_validate(settings),
        plans=crossing(3),
        records=FakeRecords(),
        partners=UnconfirmedPartners(),
        topic=outbox,
        email=outbox,
        tier_metrics=NoMetrics(),
        operator_pacer=never_waits,
        email_pacer=never_waits,
    )

    # When the monitor runs
    report = monitor.run(as_of=AS_OF)

    # Then operators hear of each crossing, and nobody is emailed an address that did not ask
    assert report.alerts == 3
    assert outbox.emailed == []
