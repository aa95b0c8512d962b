"""Signup's models: the request, the email lock and its reservation, the result, the sweep's report."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, StrictBool, field_validator

from core.models import PlainText, TierLimits, TierName


class SignupRequest(BaseModel):
    # Built at its first validation: EmailStr's email_validator costs ~50 ms of a cold start that does not need it
    # (the sweep imports these models and never validates a signup).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True, defer_build=True)

    name: PlainText = Field(min_length=1, max_length=200)
    email: EmailStr = Field(max_length=254)
    tier: TierName | None = None
    # Opt in to quota alert emails at this address (the quota monitor sends them through SES). Strict, as the
    # API's model: "yes" or 1 is refused, not read as true.
    alert_emails: StrictBool = False

    @field_validator("email")
    @classmethod
    def _lower_case(cls, email: str) -> str:
        # One partner per mailbox: Dev@Acme.example and dev@acme.example are the same person.
        return email.lower()


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


class SweepReport(BaseModel):
    """One run of the signup sweep: expired pending locks found, cleaned up, failed, left for the next run."""

    found: int
    cleaned: int
    failed: int
    deferred: int
    # Retired keys (core.key_rotation) due by the run's scheduled time: found, deleted, not deleted (retried).
    retired_found: int = 0
    retired_deleted: int = 0
    retired_failed: int = 0


class SignedUpPartner(BaseModel):
    """What signup answers. `api_key` is None in the idempotency record: the value is never stored."""

    partner_id: str
    api_key: SecretStr | None = None
    api_key_id: str
    tier: TierName
    limits: TierLimits
    # With alert_emails: whether the confirmation link was emailed ("sent"), or could not be ("unavailable").
    email_confirmation: Literal["sent", "unavailable"] | None = None
