"""What the billing webhook needs from the outside world, besides the kernel's usage plans and tier-change lock
(core.ports)."""

from typing import Any, Protocol

from core.billing.models import BillingEvent, UnmatchedSighting
from core.ports import TierChangeLock


class TierChangeStore(TierChangeLock, Protocol):
    """The partners table, as the billing webhook uses it: partners and their tier-change state (the kernel's
    lock), customer ids, and events recorded for a partner we do not know yet."""

    def partner_for_customer(self, customer_id: str) -> str | None: ...

    def link_customer(self, customer_id: str, partner_id: str) -> None: ...

    def mark_notified(self, partner_id: str, event_id: str) -> None: ...

    def record_unmatched(self, event: BillingEvent, now: float) -> UnmatchedSighting: ...

    def forget_unmatched(self, event: BillingEvent) -> None: ...


class Notifier(Protocol):
    """The operators' topic."""

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str: ...


class SecretSource(Protocol):
    """A JSON secret (the webhook signing secrets)."""

    def read(self) -> dict[str, Any]: ...
