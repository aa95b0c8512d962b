"""What the operator console needs from the outside world, besides the kernel's usage plans (core.ports)."""

from typing import Any, Protocol

from core.admin.models import AuditEntry, PartnerFilter
from core.models import Partner


class PartnerIndex(Protocol):
    """The partners table's partner records, as operators browse them."""

    def get(self, partner_id: str) -> Partner | None: ...

    def page(self, filters: PartnerFilter, limit: int, after: str | None) -> tuple[list[Partner], str | None]:
        """Up to `limit` partners matching `filters` after partner id `after`; and the last one's id when more
        may follow."""
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
