"""What the quota monitor needs from the outside world, besides the kernel's email (core.ports)."""

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Protocol

from core.messages import Message
from core.models import Partner, UsagePlan
from core.quota.dormant import NoticeState
from core.quota.standing import AlertClaim, AlertState, ClaimResult, KeyQuotaReading, PeriodRecords, TierSummary


class UsageReader(Protocol):
    """API Gateway's usage plans and GetUsage, paced to the monitor's share of the management-API pool."""

    def list_usage_plans(self) -> list[UsagePlan]: ...

    def usage_pages(
        self, plan_id: str, start: date, end: date, page_size: int
    ) -> Iterator[dict[str, list[list[int]]]]: ...

    def count_api_keys(self) -> int: ...

    def delete_key(self, key_id: str) -> None: ...


class QuotaRecords(Protocol):
    """The quota monitor's view of the metering table: ledger counters, its readings, its sent alerts."""

    def read_period(self, keys: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], PeriodRecords]: ...

    def write_readings(self, readings: list[KeyQuotaReading]) -> None: ...

    def claim_alert(self, claim: AlertClaim, now: float, lease_seconds: int) -> ClaimResult: ...

    def record_alerts(self, states: list[AlertState], now: datetime) -> None: ...

    def release_alert(self, state: AlertState) -> None: ...

    def claim_daily_sweep(self, day: date, now: float, lease_seconds: int, expires_at: int) -> bool: ...

    def finish_daily_sweep(self, day: date, now: datetime) -> None: ...


class DormantPartners(Protocol):
    """The dormant-key sweep's marks on partner records: the notice's claim, then DORMANT."""

    def claim_notice(
        self, partner_id: str, api_key_id: str, tier: str, now: int, lease_seconds: int
    ) -> NoticeState: ...

    def mark_dormant(self, partner_id: str, api_key_id: str, now: str) -> None: ...

    def notice_failed(self, partner_id: str, api_key_id: str, now: str) -> None: ...

    def release_notice(self, partner_id: str, api_key_id: str) -> None: ...


class PartnerDirectory(Protocol):
    """Partners by API key id, many at once."""

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]: ...


class AlertPublisher(Protocol):
    """The operators' topic, for text messages with filterable attributes."""

    def publish_message(self, message: Message) -> str: ...


class TierMetricsSink(Protocol):
    """Per-tier metrics: cardinality grows with tiers and thresholds, never with partners."""

    def publish(self, summaries: list[TierSummary], thresholds: tuple[int, ...]) -> None: ...
