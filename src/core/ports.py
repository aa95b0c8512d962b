"""Ports: what the domain needs from the outside world, as small Protocols. Adapters live in core.adapters."""

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any, Protocol

from core.chat import ModelReply, ModelRequest
from core.ledger import LedgerEntry, LedgerReading, QuotaReading, TokenHold
from core.models import (
    BillingEvent,
    BillingState,
    DailyUsage,
    IssuedKey,
    Partner,
    PartnerStatus,
    PendingLock,
    PendingTierChange,
    Reservation,
    UnmatchedSighting,
    UsagePlan,
)
from core.quota import AlertClaim, AlertState, ClaimResult, KeyQuotaReading, PeriodRecords, TierSummary
from core.quota_alerts import Message


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


class PartnerStore(Protocol):
    """The partners table."""

    def reserve_email(self, email: str, partner_id: str, now: float, lease_seconds: int) -> Reservation: ...

    def record_key(self, email: str, reservation: Reservation, key_id: str) -> None: ...

    def forget_key(self, email: str, partner_id: str, key_id: str) -> None: ...

    def activate(self, partner: Partner, mailbox: str | None = None) -> None: ...

    def release(self, email: str, reservation: Reservation) -> None: ...

    def expired_locks(self, now: float) -> list[PendingLock]: ...

    def add_confirmation(self, token_hash: str, partner_id: str, expires_at: int) -> None: ...

    def confirm_email(self, token_hash: str, now: float) -> str | None: ...

    def is_registered(self, mailbox: str) -> bool: ...

    def add_signup_request(
        self, token_hash: str, mailbox: str, request: dict[str, Any], now: float, expires_at: int
    ) -> bool: ...

    def pending_signup(self, token_hash: str, now: float) -> dict[str, Any] | None: ...

    def forget_signup_request(self, token_hash: str, mailbox: str) -> None: ...

    def drop_expired_lock(self, lock: PendingLock) -> bool: ...

    def get(self, partner_id: str) -> Partner | None: ...

    def get_by_api_key_id(self, api_key_id: str) -> Partner | None: ...


class TierChangeStore(Protocol):
    """The partners table, as the billing webhook uses it: partners, their billing state, customer ids, and
    events recorded for a partner we do not know yet."""

    def get_with_billing(self, partner_id: str) -> tuple[Partner, BillingState] | None: ...

    def partner_for_customer(self, customer_id: str) -> str | None: ...

    def link_customer(self, customer_id: str, partner_id: str) -> None: ...

    def begin_tier_change(self, partner_id: str, change: PendingTierChange, seen: BillingState, now: float) -> None: ...

    def release_tier_change(self, partner_id: str, event_id: str) -> None: ...

    def finish_tier_change(
        self,
        partner_id: str,
        event: BillingEvent,
        *,
        tier: str,
        status: PartnerStatus,
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


class ModelProvider(Protocol):
    """A model behind the AI API (Bedrock, an OpenAI-compatible upstream, the offline provider).

    `complete` raises UpstreamRejected, UpstreamThrottled, UpstreamFailed, UpstreamTimedOut or
    ProviderMisconfigured (core.errors); no other outcome is charged or expected.
    """

    def estimate_prompt_tokens(self, request: ModelRequest) -> int: ...

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply: ...


class TokenLedger(Protocol):
    """The AI API's per-key, per-period ledger in the metering table, and the quota monitor's readings."""

    def count_request(self, entry: LedgerEntry) -> LedgerReading: ...

    def reserve(
        self, entry: LedgerEntry, hold: TokenHold, budget: int | None, now: float
    ) -> tuple[bool, LedgerReading]:
        """Count the request and record `hold` if its tokens fit in `budget` (None: unlimited), giving back
        holds whose `until` is before `now` when they are in the way: whether it was held, and the counters
        after. The request is counted either way."""
        ...

    def settle(self, entry: LedgerEntry, hold: TokenHold, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace the hold by what the model used; nothing if the hold is already gone."""
        ...

    def release(self, entry: LedgerEntry, hold: TokenHold) -> None:
        """Give the hold back; nothing if it is already gone."""
        ...

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None: ...


# --- The quota monitor --------------------------------------------------------------------------------------


class UsageReader(Protocol):
    """API Gateway's usage plans and GetUsage, paced to the monitor's share of the management-API pool."""

    def list_usage_plans(self) -> list[UsagePlan]: ...

    def usage_pages(
        self, plan_id: str, start: date, end: date, page_size: int
    ) -> Iterator[dict[str, list[list[int]]]]: ...


class QuotaRecords(Protocol):
    """The quota monitor's view of the metering table: ledger counters, its readings, its sent alerts."""

    def read_period(self, keys: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], PeriodRecords]: ...

    def write_readings(self, readings: list[KeyQuotaReading]) -> None: ...

    def claim_alert(self, claim: AlertClaim, now: float, lease_seconds: int) -> ClaimResult: ...

    def record_alerts(self, states: list[AlertState], now: datetime) -> None: ...

    def release_alert(self, state: AlertState) -> None: ...


class PartnerDirectory(Protocol):
    """Partners by API key id, many at once."""

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]: ...


class AlertPublisher(Protocol):
    """The operators' topic, for text messages with filterable attributes."""

    def publish_message(self, message: Message) -> str: ...


class EmailSender(Protocol):
    """Email to one address (raises EmailRejected when the provider refuses it for good)."""

    def send(self, to: str, message: Message) -> str: ...


class TierMetricsSink(Protocol):
    """Per-tier metrics: cardinality grows with tiers and thresholds, never with partners."""

    def publish(self, summaries: list[TierSummary], thresholds: tuple[int, ...]) -> None: ...
