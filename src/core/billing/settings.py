"""The billing webhook's settings (POST /webhooks/billing). TIERS (the tiers' policies) is read for the
operators' tier-change email; the first of SelfServiceTiers is the free tier of move-to-free."""

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from core.settings import (
    SecretsSettings,
    SelfServiceTiersSettings,
    StackSettings,
    TierCacheSettings,
    TierChangeSettings,
    TierPoliciesSettings,
)


class BillingWebhookSettings(
    StackSettings,
    SelfServiceTiersSettings,
    TierCacheSettings,
    TierChangeSettings,
    SecretsSettings,
    TierPoliciesSettings,
):
    """POST /webhooks/billing: the billing webhook that moves partners' keys between tiers."""

    idempotency_table: str = Field(min_length=1)
    # The AI API's ledger: requests per key and period, counted as they pass (GetUsage lags up to 30 min).
    metering_table: str = Field(min_length=1)
    # The Secrets Manager secret with the signing secrets: {"stripe": [...], "standard": [...]} (never the values).
    webhook_secret_arn: str = Field(min_length=1)
    # The operators' topic: every applied change, and events parked for an unknown partner.
    alert_topic_arn: str = Field(min_length=1)
    # Template parameter CancellationMode: a cancelled partner's key is disabled, or moved to the free tier.
    cancellation_mode: Literal["disable-key", "move-to-free"] = "disable-key"
    # Template parameter StripePriceTiers: `price_id=tier,...`, overriding the prices' lookup_key.
    stripe_price_tiers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # How long an event for an unknown partner is answered "retry" before it is parked for operators.
    unknown_partner_retry_seconds: int = Field(default=3600, ge=0)
    # How often the signing secrets are re-read: a rotated secret is picked up within this time.
    secret_cache_seconds: int = Field(default=60, ge=0)
    # How long a processed event id is remembered (Stripe retries for up to 3 days).
    processed_event_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    @field_validator("stripe_price_tiers", mode="before")
    @classmethod
    def _split_price_tiers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [pair.strip() for pair in value.split(",") if pair.strip()]
        if any(pair.count("=") != 1 for pair in pairs):
            raise ValueError("STRIPE_PRICE_TIERS must be price_id=tier pairs separated by commas")
        mapped = {}
        for pair in pairs:
            price_id, _, tier = pair.partition("=")
            mapped[price_id.strip()] = tier.strip()
        return mapped
