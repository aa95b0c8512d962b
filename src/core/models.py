"""Pydantic models the capabilities share: tiers and their limits, usage plans and keys, partners."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

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


class PartnerStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    # Its key was deleted after going unused for DormantKeyDays (the quota monitor's sweep); an operator may
    # issue a new one.
    DORMANT = "DORMANT"


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
class IssuedKey:
    id: str
    value: SecretStr


@dataclass(frozen=True)
class DailyUsage:
    """One day of GetUsage for one key: requests made that day, and the quota left at the end of it."""

    used: int
    remaining: int
