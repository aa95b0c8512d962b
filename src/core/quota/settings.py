"""The quota monitor's settings (QuotaMonitorFunction)."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from core.settings import SelfServiceTiersSettings, StackSettings, TierPoliciesSettings


class QuotaMonitorSettings(StackSettings, TierPoliciesSettings, SelfServiceTiersSettings):
    """The scheduled quota monitor (QuotaMonitorFunction)."""

    metering_table: str = Field(min_length=1)
    alert_topic_arn: str = Field(min_length=1)
    # QuotaAlertThresholds: percent of a key's quota (or token budget) that triggers an alert, once per period.
    alert_thresholds: Annotated[tuple[int, ...], NoDecode] = (50, 80, 95, 100)
    # PartnerAlertSender: the verified SES sender of partners' own alerts; empty: partners get none.
    partner_alert_sender: str = ""
    # PartnerSupportContact: where partners' alerts send them to upgrade or get help, an email address or an
    # http(s) URL; empty: a generic sentence.
    partner_support_contact: str = Field(default="", pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$|^https?://\S+$")
    # The monitor's share of the account's management-API pool (10 requests/s, burst 40, shared with signup
    # and the billing webhook): GetUsagePlans and GetUsage calls are paced to this.
    management_api_rate: float = Field(default=5.0, gt=0)
    management_api_burst: int = Field(default=5, ge=1)
    get_usage_page_size: int = Field(default=500, ge=1, le=500)
    # SNS suspends an email endpoint receiving more than 10 messages a second, and two runs may overlap:
    # operator messages go out at this rate, and more crossings than `alert_digest_after` in one run become
    # digests of `alert_digest_size` crossings each.
    operator_messages_per_second: float = Field(default=2.0, gt=0, le=5)
    alert_digest_after: int = Field(default=10, ge=0)
    alert_digest_size: int = Field(default=100, ge=1, le=500)
    # SES's sending rate (sandbox: 1/s; production accounts start at 14/s).
    partner_emails_per_second: float = Field(default=10.0, gt=0)
    # A claimed alert belongs to its run for this long: longer than the function's timeout, so only a dead
    # run's claims are taken over.
    alert_claim_seconds: int = Field(default=900, ge=60)
    # Stop sending partner emails when less than this is left of the invocation; the next run finishes.
    reserve_seconds: float = Field(default=20.0, ge=0)
    # DormantKeyDays: delete the keys of self-service tiers (SelfServiceTiers) unused for this many UTC days,
    # after a notice to the partner (core.quota.dormant); 0: never. At most 90: AWS documents no retention for
    # GetUsage's data, and a window past what it keeps would call a used key unused.
    dormant_key_days: int = Field(default=0, ge=0, le=90)

    @field_validator("alert_thresholds", mode="before")
    @classmethod
    def _split_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
        return value

    @field_validator("alert_thresholds")
    @classmethod
    def _percentages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 1 <= threshold <= 100 for threshold in value):
            raise ValueError("alert thresholds are percentages from 1 to 100, at least one")
        return tuple(sorted(set(value)))

    @property
    def token_budgets(self) -> dict[str, int]:
        """Each tier's token budget, where it has one."""
        return {tier: policy.token_budget for tier, policy in self.tiers.items() if not policy.unlimited_tokens}
