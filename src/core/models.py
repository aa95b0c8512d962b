"""Pydantic models the capabilities share: tiers and their limits, usage plans and keys, partners."""

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints

QuotaPeriod = Literal["DAY", "WEEK", "MONTH"]

# Characters that must never reach an email header or body, a log line or a terminal as they are: C0 (CR/LF,
# NUL, ESC of ANSI sequences), DEL, C1, and the bidi embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069) that make text display other than it reads. The API's model (template.yaml) has the same class.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def refuse_control_characters(value: object) -> object:
    """Refuse text with CONTROL_CHARACTERS; runs before whitespace stripping, which would quietly drop a trailing
    CR, LF or NEL."""
    if isinstance(value, str) and CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters (line breaks, tabs, escapes, bidi controls)")
    return value


# Text that reaches emails, logs and terminals as it is (a partner's name, an operator's reason).
PlainText = Annotated[str, BeforeValidator(refuse_control_characters)]


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


class PartnerStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"  # billing cancelled the subscription: the key is disabled
    SUSPENDED = "SUSPENDED"  # an operator suspended the partner: the key is disabled until an operator resumes it
    REVOKED = "REVOKED"  # an operator revoked the key: it is deleted; the partner stays, for a re-issue
    # Its key was deleted after going unused for DormantKeyDays (the quota monitor's sweep); an operator may
    # issue a new one.
    DORMANT = "DORMANT"


# Statuses only an operator sets and lifts: billing events never change them (docs/decisions.md).
OPERATOR_HOLDS = frozenset({PartnerStatus.SUSPENDED, PartnerStatus.REVOKED})
# Statuses whose partner has no key at API Gateway (revoked by an operator, deleted by the dormant-key sweep):
# billing changes only their record, and keeps the status (a keyless partner cannot become ACTIVE by billing).
KEYLESS = frozenset({PartnerStatus.REVOKED, PartnerStatus.DORMANT})


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
    # While an operator holds the partner (SUSPENDED, REVOKED): the status billing gave it, which resuming restores.
    held_status: PartnerStatus | None = None

    @property
    def wants_alert_emails(self) -> bool:
        """Opted in, and the address proved it is the partner's: we never mail an address that did not ask."""
        return self.alert_emails and self.email_confirmed


@dataclass(frozen=True)
class IssuedKey:
    id: str
    value: SecretStr


@dataclass(frozen=True)
class DailyUsage:
    """One day of GetUsage for one key: requests made that day, and the quota left at the end of it."""

    used: int
    remaining: int


@dataclass(frozen=True)
class PeriodRequests:
    """Requests the AI API counted for a key in one ledger item: the item's quota period start and its tier
    (the tier of the item's latest request). The ledger counts every request as it passes, with no lag."""

    period_start: datetime
    tier: str
    requests: int


@dataclass(frozen=True)
class Reservation:
    """A lease on an email address while its signup is in flight."""

    partner_id: str
    resumed: bool
    lease_until: int = 0  # epoch seconds
    # Keys a dead attempt for the same partner created (a takeover deletes them first).
    key_ids: tuple[str, ...] = ()


class PendingTierChange(BaseModel):
    """A partner's tier-change lock and journal: which change holds it, until when, and the usage to carry over.
    Billing events and operators' tier changes take the same lock (core.tier_changes)."""

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


class TierChangeState(BaseModel):
    """What the partner record keeps about tier changes (billing events and operators'), next to the Partner fields:
    the last applied change, by event time, and the lock of a change in progress."""

    model_config = ConfigDict(frozen=True)

    tier_event_at: int | None = None  # occurred_at_us of the last applied change
    tier_event_id: str | None = None
    tier_event_previous_tier: str | None = None  # the tier before that change, for a notification sent late
    tier_event_notified: bool = True
    tier_change: PendingTierChange | None = None

    def is_newer(self, occurred_at_us: int, event_id: str) -> bool:
        """Whether a change stamped (`occurred_at_us`, `event_id`) comes after the last applied one (ties broken by
        event id, so every order converges)."""
        if self.tier_event_at is None:
            return True
        return (occurred_at_us, event_id) > (self.tier_event_at, self.tier_event_id or "")


class AuditEntry(BaseModel):
    """One change to a partner, as its audit trail keeps it (docs/CONTRACTS.md, `AUDIT#` items): an operator's
    action (the console) or the partner's own key recovery (the portal)."""

    partner_id: str
    seq: int
    at: str  # ISO 8601 UTC
    actor: str  # the operator's IAM principal ARN, or `partner:portal-key-recovery`
    action: str
    reason: str
    outcome: str = "started"  # started | applied | failed
    details: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    notified: bool = False
