"""What the operator console needs from the outside world, besides the kernel's usage plans (core.ports)."""

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Protocol

from core.admin.models import AuditEntry, LedgerUsage, PartnerFilter
from core.models import Partner, PartnerStatus


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


class AuditLog(Protocol):
    """The audit trail of operator actions, per partner, in order."""

    def begin(self, entry: AuditEntry) -> AuditEntry:
        """Record `entry` (outcome `started`) as the partner's next entry; the entry with its `seq`."""
        ...

    def finish(self, partner_id: str, seq: int, outcome: str, details: dict[str, Any], notified: bool) -> None: ...

    def trail(self, partner_id: str, limit: int) -> list[AuditEntry]:
        """The partner's last `limit` entries, newest first."""
        ...


class Notifier(Protocol):
    """The operators' topic."""

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str: ...


class PlanUsageReader(Protocol):
    """GetUsage over a whole usage plan, a page of keys at a time (the kernel's ApiGateway.usage_pages)."""

    def usage_pages(self, plan_id: str, start: date, end: date, page_size: int) -> Iterator[dict[str, list[list[int]]]]:
        """Every key's daily `[used, remaining]` from `start` to `end` (UTC days, inclusive), page by page."""
        ...


class LedgerItems(Protocol):
    """The AI API's ledger items (metering table) of every key for given period starts."""

    def period_items(self, starts: list[datetime]) -> Iterator[LedgerUsage]: ...
