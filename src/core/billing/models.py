"""The billing webhook's models: billing events, a partner's billing state and pending change, the outcome."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import PartnerStatus, TierName

WebhookScheme = Literal["stripe", "standard"]


class TierAction(StrEnum):
    SUBSCRIBE = "subscribe"  # be on `tier`, with the key enabled
    CANCEL = "cancel"  # the subscription ended: disable the key, or move it to the free tier


class BillingEvent(BaseModel):
    """A verified billing event that asks for a tier change, whichever scheme carried it."""

    model_config = ConfigDict(frozen=True)

    scheme: WebhookScheme
    event_id: str = Field(min_length=1, max_length=255)
    event_type: str
    # When the billing system created the event (epoch microseconds): events are applied in this order.
    occurred_at_us: int
    action: TierAction
    tier: TierName | None = None
    partner_id: str | None = None
    customer_id: str | None = None

    @property
    def partner_ref(self) -> str:
        return f"partner {self.partner_id}" if self.partner_id else f"billing customer {self.customer_id}"


class IgnoredBillingEvent(BaseModel):
    """A verified event we acknowledge and do not act on (a type we do not handle, an incomplete subscription)."""

    model_config = ConfigDict(frozen=True)

    scheme: WebhookScheme
    event_id: str
    event_type: str
    reason: str


class PendingTierChange(BaseModel):
    """The partner's change lock and journal: which event holds it, until when, and the usage to carry over."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    to_tier: TierName
    to_status: PartnerStatus
    lease_until: int  # epoch seconds; an expired lease means its holder died and may be taken over
    # Requests the key made in the plan it left, in the new plan's current quota period (None: nothing to carry).
    carried: int | None = None
    # Of `carried`, what had been carried into the plan it left (same quota period only). It may hold the
    # new plan's own requests of this period (a round trip), which the new plan counts once, not twice.
    carried_in: int = 0
    window_start: str | None = None  # ISO date of that period's start


class BillingState(BaseModel):
    """What the partner record keeps about billing events, next to the Partner fields."""

    model_config = ConfigDict(frozen=True)

    tier_event_at: int | None = None  # occurred_at_us of the last applied event
    tier_event_id: str | None = None
    tier_event_previous_tier: str | None = None  # the tier before that event, for a notification sent late
    tier_event_notified: bool = True
    tier_change: PendingTierChange | None = None

    def is_newer(self, event: BillingEvent) -> bool:
        """Whether `event` comes after the last applied one (ties broken by event id, so every order converges)."""
        if self.tier_event_at is None:
            return True
        return (event.occurred_at_us, event.event_id) > (self.tier_event_at, self.tier_event_id or "")


@dataclass(frozen=True)
class UnmatchedSighting:
    """An event for a partner we do not know (yet), as recorded: when it was first seen, how often delivered."""

    first_seen_at: int  # epoch seconds
    deliveries: int


TierChangeStatus = Literal["applied", "unchanged", "duplicate", "stale", "ignored", "recorded"]


class TierChangeOutcome(BaseModel):
    """What the webhook answers, and what a replay of the same event answers again."""

    model_config = ConfigDict(frozen=True)

    status: TierChangeStatus
    event_id: str
    partner_id: str | None = None
    previous_tier: str | None = None
    tier: str | None = None
    partner_status: PartnerStatus | None = None
    detail: str | None = None
