"""Pydantic models of the domain: tiers and their limits, partners, signup requests and results."""

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, StrictBool, StringConstraints, field_validator

QuotaPeriod = Literal["DAY", "WEEK", "MONTH"]
TierName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*$", max_length=32)]


class TierLimits(BaseModel):
    """A usage plan's throttle and quota, as API Gateway enforces them."""

    model_config = ConfigDict(frozen=True)

    rate_limit: float | None = None
    burst_limit: int | None = None
    quota_limit: int | None = None
    quota_period: QuotaPeriod | None = None
    quota_offset: int = Field(default=0, exclude=True)


class UsagePlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    limits: TierLimits


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: TierName
    plan_id: str
    limits: TierLimits


# Characters that must never reach an email header or body, a log line or a terminal as they are: C0 (CR/LF,
# NUL, ESC of ANSI sequences), DEL, C1, and the bidi embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069) that make text display other than it reads. The API's model (template.yaml) has the same class.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class SignupRequest(BaseModel):
    # Built at its first validation: EmailStr's email_validator costs every other function's cold start ~50 ms.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True, defer_build=True)

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)
    tier: TierName | None = None
    # Opt in to quota alert emails at this address (the quota monitor sends them through SES). Strict, as the
    # API's model: "yes" or 1 is refused, not read as true.
    alert_emails: StrictBool = False

    @field_validator("name", mode="before")
    @classmethod
    def _no_control_characters(cls, name: object) -> object:
        # Before whitespace stripping, which would quietly drop a trailing CR, LF or NEL.
        if isinstance(name, str) and CONTROL_CHARACTERS.search(name):
            raise ValueError("must not contain control characters (line breaks, tabs, escapes, bidi controls)")
        return name

    @field_validator("email")
    @classmethod
    def _lower_case(cls, email: str) -> str:
        # One partner per mailbox: Dev@Acme.example and dev@acme.example are the same person.
        return email.lower()


class PartnerStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class Partner(BaseModel):
    """A partner as our table keeps it. Never holds an API key value, only its id and a short prefix."""

    partner_id: str
    name: str
    email: str
    tier: TierName
    api_key_id: str
    key_prefix: str
    status: PartnerStatus
    created_at: str
    updated_at: str
    # Quota alert emails to `email` (opted in at signup); sent only once the address confirmed a link.
    alert_emails: bool = False
    email_confirmed: bool = False

    @property
    def wants_alert_emails(self) -> bool:
        """Opted in, and the address proved it is the partner's: we never mail an address that did not ask."""
        return self.alert_emails and self.email_confirmed


@dataclass(frozen=True)
class Reservation:
    """A lease on an email address while its signup is in flight."""

    partner_id: str
    resumed: bool
    lease_until: int = 0  # epoch seconds
    # Keys a dead attempt for the same partner created (a takeover deletes them first).
    key_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingLock:
    """An email lock whose signup never finished, as the sweep finds it."""

    email: str
    partner_id: str
    lease_until: int
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class IssuedKey:
    id: str
    value: SecretStr


class SweepReport(BaseModel):
    """One run of the signup sweep: expired pending locks found, cleaned up, failed, left for the next run."""

    found: int
    cleaned: int
    failed: int
    deferred: int


class SignedUpPartner(BaseModel):
    """What signup answers. `api_key` is None in the idempotency record: the value is never stored."""

    partner_id: str
    api_key: SecretStr | None = None
    api_key_id: str
    tier: TierName
    limits: TierLimits
    # With alert_emails: whether the confirmation link was emailed ("sent"), or could not be ("unavailable").
    email_confirmation: Literal["sent", "unavailable"] | None = None


# --- Tier-change webhook -------------------------------------------------------------------------------

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
class DailyUsage:
    """One day of GetUsage for one key: requests made that day, and the quota left at the end of it."""

    used: int
    remaining: int


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
