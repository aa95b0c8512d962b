"""The operator console's models: who acts (the IAM principal), why (a reason), what was recorded (audit
entries), and what operators read (partner summaries, pages)."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt, field_validator, model_validator

from core.key_rotation import MAX_GRACE_SECONDS
from core.models import AuditEntry, Partner, PartnerStatus, PlainText, TierName

# Partner ids as signup makes them (`p_<32 hex>`), with room for ids other systems bring in: only characters
# that are safe in a URL path, a DynamoDB key and a log line.
PARTNER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_REASON_LENGTH = 500
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Operator:
    """The caller, as API Gateway's IAM authorization established it (requestContext.identity)."""

    arn: str
    access_key: str | None = None
    request_id: str | None = None  # API Gateway's request id, kept in the audit entry


class OperatorRequest(BaseModel):
    """The base of every change's body: the reason is required, recorded and published with the change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    reason: PlainText = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class TierRequest(OperatorRequest):
    """POST /admin/partners/{id}/tier: the tier to put the partner on (a tier of this stack; 400 otherwise)."""

    tier: TierName


# An extension's upper bounds: far above any tier's quota or budget, low enough that a typo (an extra few digits)
# is a 400 instead of a key that never runs out. API Gateway's quota limit is a 32-bit int.
MAX_EXTENSION_REQUESTS = 10_000_000
MAX_EXTENSION_TOKENS = 10_000_000_000


class ExtensionRequest(OperatorRequest):
    """POST /admin/partners/{id}/extensions: requests and tokens added to the current quota period only. Whole
    numbers (JSON integers, not strings or floats), at least one above 0."""

    requests: StrictInt = Field(default=0, ge=0, le=MAX_EXTENSION_REQUESTS)
    tokens: StrictInt = Field(default=0, ge=0, le=MAX_EXTENSION_TOKENS)

    @model_validator(mode="after")
    def _grants_something(self) -> "ExtensionRequest":
        if self.requests == 0 and self.tokens == 0:
            raise ValueError("an extension grants requests or tokens: give at least one above 0")
        return self


class PartnerFilter(BaseModel):
    """GET /admin/partners's filters; each one given must match exactly (email compared lower-cased)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    tier: TierName | None = None
    status: PartnerStatus | None = None
    email: str | None = Field(default=None, min_length=3, max_length=254)

    @field_validator("email")
    @classmethod
    def _lower_case(cls, email: str | None) -> str | None:
        return email.lower() if email is not None else None


class ImportQuery(BaseModel):
    """POST /admin/keys/import's query: the reason recorded for each imported partner (optional)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    reason: PlainText = Field(default="imported from CSV", min_length=1, max_length=MAX_REASON_LENGTH)


class UsageQuery(BaseModel):
    """GET /admin/usage's query: the period (`YYYY-MM` or `YYYY-MM-DD`, core.admin.usage_export.parse_period)
    and the format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: str = Field(min_length=7, max_length=10)
    format: Literal["csv", "json"] = "json"


class PartnerQuery(PartnerFilter):
    """A page of GET /admin/partners: the filters, a page size and the `next` token of the previous page."""

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    next: str | None = Field(default=None, max_length=512)

    @property
    def filters(self) -> PartnerFilter:
        return PartnerFilter(tier=self.tier, status=self.status, email=self.email)


class PartnerSummary(BaseModel):
    """One partner as operators list it. Never a key value: its id and 4-character prefix only."""

    partner_id: str
    name: str
    email: str
    tier: str
    status: str
    api_key_id: str | None
    key_prefix: str | None
    created_at: str

    @classmethod
    def of(cls, partner: Partner) -> "PartnerSummary":
        return cls(
            partner_id=partner.partner_id,
            name=partner.name,
            email=partner.email,
            tier=partner.tier,
            status=partner.status.value,
            api_key_id=partner.api_key_id or None,
            key_prefix=partner.key_prefix[:4] or None,
            created_at=partner.created_at,
        )


class PartnerPage(BaseModel):
    partners: list[PartnerSummary]
    next: str | None = None


class PartnerDetail(BaseModel):
    """GET /admin/partners/{id}: the partner, its standing this period, and its audit trail (newest first)."""

    partner: PartnerSummary
    standing: dict[str, Any] = Field(default_factory=dict)
    audit: list[AuditEntry] = Field(default_factory=list)


class ActionResult(BaseModel):
    """The answer to a change: the partner after it and the audit entry that records it."""

    partner: PartnerSummary
    audit: AuditEntry


@dataclass(frozen=True)
class LedgerUsage:
    """One key's AI API ledger item for one period (metering table, `PERIOD#`), as the usage export reads it:
    the key's own counters only (never a rotated key's `carried_tokens`)."""

    api_key_id: str
    period_start: datetime
    partner_id: str
    tier: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extension_requests: int = 0
    extension_tokens: int = 0
    # {model: {"prompt_tokens": n, "completion_tokens": m}} (core.adapters.metering_items.tokens_by_model)
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)


class KeyRequest(OperatorRequest):
    """POST /admin/partners/{id}/key: how long the old key keeps working (0: deleted at once; at most 7 days)."""

    grace_seconds: StrictInt = Field(default=0, ge=0, le=MAX_GRACE_SECONDS)


class RetiredKey(BaseModel):
    """The key a rotation replaced: deleted (`deleted`), or deleted by the sweep at `delete_at` (ISO)."""

    api_key_id: str
    delete_at: str
    deleted: bool


class KeyIssued(ActionResult):
    """The answer to a rotation or re-issue: the partner after it, its audit entry, and the new key, whose value
    is in this answer only (never logged, stored or traced)."""

    api_key: SecretStr
    api_key_id: str
    retired_key: RetiredKey | None = None
