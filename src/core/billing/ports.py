"""What the billing webhook needs from the outside world, besides the kernel's usage plans (core.ports)."""

from typing import Any, Protocol

from core.billing.models import BillingEvent, BillingState, PendingTierChange, UnmatchedSighting
from core.models import Partner, PartnerStatus


class TierChangeStore(Protocol):
    """The partners table, as the billing webhook uses it: partners, their billing state, customer ids, and
    events recorded for a partner we do not know yet."""

    def get_with_billing(self, partner_id: str) -> tuple[Partner, BillingState] | None: ...

    def partner_for_customer(self, customer_id: str) -> str | None: ...

    def link_customer(self, customer_id: str, partner_id: str) -> None: ...

    def begin_tier_change(
        self, partner_id: str, change: PendingTierChange, seen: BillingState, seen_status: PartnerStatus, now: float
    ) -> None: ...

    def release_tier_change(self, partner_id: str, event_id: str) -> None: ...

    def finish_tier_change(
        self,
        partner_id: str,
        event: BillingEvent,
        *,
        tier: str,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        previous_tier: str,
        notified: bool,
    ) -> None: ...

    def mark_notified(self, partner_id: str, event_id: str) -> None: ...

    def record_unmatched(self, event: BillingEvent, now: float) -> UnmatchedSighting: ...

    def forget_unmatched(self, event: BillingEvent) -> None: ...


class Notifier(Protocol):
    """The operators' topic."""

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str: ...


class SecretSource(Protocol):
    """A JSON secret (the webhook signing secrets)."""

    def read(self) -> dict[str, Any]: ...
