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
