"""Ports more than one capability needs, as small Protocols: usage plans and keys, the ledger's request counts
(plan moves), and email. Each capability keeps its own ports in its package (core.<capability>.ports); adapters
live next to the ports they serve."""

from datetime import date, datetime
from typing import Any, Protocol

from core.messages import Message
from core.models import (
    AuditEntry,
    DailyUsage,
    IssuedKey,
    Partner,
    PartnerStatus,
    PendingTierChange,
    PeriodRequests,
    TierChangeState,
    UsagePlan,
)


class UsagePlanLister(Protocol):
    """What tier discovery needs: the account's usage plans."""

    def list_usage_plans(self) -> list[UsagePlan]: ...


class UsagePlanGateway(Protocol):
    """API Gateway's usage plans and API keys (management API)."""

    def list_usage_plans(self) -> list[UsagePlan]: ...

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey: ...

    def attach_key(self, plan_id: str, key_id: str) -> None: ...

    def enable_key(self, key_id: str) -> None: ...

    def delete_key(self, key_id: str) -> None: ...

    def read_key_value(self, key_id: str) -> str: ...

    # Tier changes (the billing webhook): move a key between plans and carry its usage over.
    def plans_of_key(self, key_id: str) -> list[str]: ...

    def detach_key(self, plan_id: str, key_id: str) -> None: ...

    def disable_key(self, key_id: str) -> None: ...

    def key_usage(self, plan_id: str, key_id: str, start: date, end: date) -> list[DailyUsage]: ...

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None: ...


class RequestCounts(Protocol):
    """The AI API's ledger, read: requests per key and quota period, counted as they pass (no lag)."""

    def requests_since(self, api_key_id: str, since: datetime) -> list[PeriodRequests]: ...


class TierChangeLock(Protocol):
    """The partner record's tier-change state and lock (core.tier_changes): billing events and operators' tier
    changes are applied one at a time per partner, in event-time order."""

    def get_with_state(self, partner_id: str) -> tuple[Partner, TierChangeState] | None: ...

    def begin_tier_change(
        self,
        partner_id: str,
        change: PendingTierChange,
        seen: TierChangeState,
        seen_status: PartnerStatus,
        now: float,
    ) -> None:
        """Take the lock if nothing moved since `seen` and `seen_status` were read; TierChangeInProgress otherwise."""
        ...

    def release_tier_change(self, partner_id: str, event_id: str) -> None: ...

    def finish_tier_change(
        self,
        partner_id: str,
        *,
        event_id: str,
        occurred_at_us: int,
        tier: str,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        previous_tier: str,
        notified: bool,
    ) -> None: ...


class EmailSender(Protocol):
    """Email to one address (raises EmailRejected when the provider refuses it for good)."""

    def send(self, to: str, message: Message) -> str: ...


class AuditLog(Protocol):
    """A partner's audit trail (operator actions, key recoveries), in order (core.adapters.audit_trail)."""

    def begin(self, entry: AuditEntry) -> AuditEntry:
        """Record `entry` as the partner's next entry, with its outcome (`started` for a change about to run, then
        `finish`ed; `applied` for one that happened); the entry with its `seq`."""
        ...

    def finish(self, partner_id: str, seq: int, outcome: str, details: dict[str, Any], notified: bool) -> None: ...

    def trail(self, partner_id: str, limit: int) -> list[AuditEntry]:
        """The partner's last `limit` entries, newest first."""
        ...
