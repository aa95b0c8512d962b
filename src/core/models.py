"""Pydantic models of the domain: tiers and their limits, partners, signup requests and results."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, StringConstraints, field_validator

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


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)
    tier: TierName | None = None

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


@dataclass(frozen=True)
class Reservation:
    """A lease on an email address while its signup is in flight."""

    partner_id: str
    resumed: bool


@dataclass(frozen=True)
class IssuedKey:
    id: str
    value: SecretStr


class SignedUpPartner(BaseModel):
    """What signup answers. `api_key` is None in the idempotency record: the value is never stored."""

    partner_id: str
    api_key: SecretStr | None = None
    api_key_id: str
    tier: TierName
    limits: TierLimits
