"""What the operator console needs from the outside world, besides the kernel's usage plans (core.ports)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from pydantic import SecretStr

from core.admin.models import LedgerUsage, PartnerFilter
from core.models import Partner, PartnerStatus, Reservation


class PartnerIndex(Protocol):
    """The partners table's partner records, as operators browse them."""

    def get(self, partner_id: str) -> Partner | None: ...

    def page(self, filters: PartnerFilter, limit: int, after: str | None) -> tuple[list[Partner], str | None]:
        """Up to `limit` partners matching `filters` after partner id `after`; and the last one's id when more
        may follow."""
        ...

    def set_status(
        self,
        partner_id: str,
        *,
        seen: PartnerStatus,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        now: float,
    ) -> None:
        """Set the partner's status (and the status to restore on resume, or none), if it is still `seen` and no
        billing change holds its lock; TierChangeInProgress (409) otherwise."""
        ...


class ApiKeys(Protocol):
    """API Gateway's keys (UpdateApiKey, DeleteApiKey): the kernel's ApiGateway adapter."""

    def enable_key(self, key_id: str) -> None: ...

    def disable_key(self, key_id: str) -> None: ...

    def delete_key(self, key_id: str) -> None:
        """Delete the key; one already gone is fine."""
        ...


class Notifier(Protocol):
    """The operators' topic."""

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str: ...


@dataclass(frozen=True)
class LedgerTotals:
    """One key's ledger item for one quota period, as the console reads it (docs/CONTRACTS.md, Metering table)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reserved_tokens: int = 0
    extension_requests: int = 0
    extension_tokens: int = 0
    carried_tokens: int = 0
    extension_at: str | None = None


@dataclass(frozen=True)
class LedgerItem:
    """Which ledger item: the key, its quota period, and who owns it (written only where the item has none yet)."""

    api_key_id: str
    period_start: datetime
    period_reset: datetime
    tier: str
    partner_id: str


class UsageLedger(Protocol):
    """The AI API's ledger in the metering table, as operators change and read it."""

    def grant(self, item: LedgerItem, requests: int, tokens: int, at: datetime) -> LedgerTotals:
        """Record an extension (`extension_requests`, `extension_tokens`, `extension_at`) and make the tokens
        count in the budget's conditional write, in one write; the item's totals after it."""
        ...

    def totals(self, api_key_id: str, period_start: datetime) -> LedgerTotals: ...

    def alerts(self, api_key_id: str, period_start: datetime) -> list[dict[str, Any]]:
        """The quota monitor's alerts for the key this period (`ALERT#` items): threshold, when and to whom sent."""
        ...


class PlanUsageReader(Protocol):
    """GetUsage over a whole usage plan, a page of keys at a time (the kernel's ApiGateway.usage_pages)."""

    def usage_pages(self, plan_id: str, start: date, end: date, page_size: int) -> Iterator[dict[str, list[list[int]]]]:
        """Every key's daily `[used, remaining]` from `start` to `end` (UTC days, inclusive), page by page."""
        ...


class LedgerItems(Protocol):
    """The AI API's ledger items (metering table) of every key for given period starts."""

    def period_items(self, starts: list[datetime]) -> Iterator[LedgerUsage]: ...


class ExportStore(Protocol):
    """Where the scheduled usage export writes (UsageExportBucket): PutObject only."""

    def put(self, key: str, body: bytes, content_type: str) -> None: ...


class EnrolmentStore(Protocol):
    """The kernel's PartnerEnrolment (core.adapters.partners_table): the mailbox lock, then the partner."""

    def reserve_email(self, email: str, partner_id: str, now: float, lease_seconds: int) -> Reservation: ...

    def record_key(self, email: str, reservation: Reservation, key_id: str) -> None: ...

    def forget_key(self, email: str, partner_id: str, key_id: str) -> None: ...

    def activate(self, partner: Partner, mailbox: str | None = None) -> None: ...

    def release(self, email: str, reservation: Reservation) -> None: ...


class KeyCreator(Protocol):
    """API Gateway's keys as the import makes them (the kernel's ApiGateway)."""

    def create_disabled_key_with_value(self, name: str, tags: dict[str, str], value: SecretStr) -> str: ...

    def attach_key(self, plan_id: str, key_id: str) -> None: ...

    def enable_key(self, key_id: str) -> None: ...

    def delete_key(self, key_id: str) -> None: ...
