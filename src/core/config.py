"""Configuration: one pydantic model per function, read from the environment once."""

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.tier_policy import ModelCatalog, TierPolicy


class StackSettings(BaseSettings):
    """What every function of the stack knows (template Globals)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    stack_name: str = Field(min_length=1)
    partners_table: str = Field(min_length=1)


class SignupSettings(StackSettings):
    idempotency_table: str = Field(min_length=1)
    # Tiers an unauthenticated caller may pick; the first is the default. Paid tiers come from billing.
    self_service_tiers: Annotated[tuple[str, ...], NoDecode] = ("free",)
    # How long GetUsagePlans results are reused: tiers change only with a deploy.
    tier_cache_seconds: int = Field(default=300, ge=0)
    # A pending signup's lease on its email. Longer than the function's timeout, so an expired lease means
    # its holder is gone and a retry may take over and clean up.
    signup_lease_seconds: int = Field(default=60, ge=1)
    # OneKeyPerMailbox: one key per mailbox where the provider ignores dots and +tags (gmail.com, googlemail.com).
    one_key_per_mailbox: bool = False
    # PartnerAlertSender: the verified SES sender of the link that confirms a partner's alert address
    # (empty: no link is sent, and no partner gets alert emails).
    partner_alert_sender: str = ""
    # How long a confirmation link works.
    confirmation_link_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    # SignupDoubleOptIn: the key is issued only when the link emailed to the address is opened.
    double_opt_in: bool = False

    @model_validator(mode="after")
    def _opt_in_needs_a_sender(self) -> "SignupSettings":
        if self.double_opt_in and not self.partner_alert_sender:
            raise ValueError("DOUBLE_OPT_IN needs PARTNER_ALERT_SENDER, the sender of the confirmation link")
        return self

    @field_validator("self_service_tiers", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(tier.strip() for tier in value.split(",") if tier.strip())
        return value

    @field_validator("self_service_tiers")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one self-service tier is required")
        return value


@cache
def signup_settings() -> SignupSettings:
    return SignupSettings()  # fields come from the environment


class SignupSweepSettings(StackSettings):
    """The scheduled sweep of failed signups (SignupSweepFunction)."""

    # Its share of the account's management-API pool (DeleteApiKey: 5/s, all calls: 10/s).
    sweep_calls_per_second: float = Field(default=1.0, gt=0, le=5)
    # Stop starting cleanups when less than this is left of the invocation; the next run finishes.
    sweep_reserve_seconds: float = Field(default=10.0, ge=0)


@cache
def signup_sweep_settings() -> SignupSweepSettings:
    return SignupSweepSettings()  # fields come from the environment


class AiApiSettings(StackSettings):
    """What the AI API's functions share: the ledger, the model catalog and the tiers' AI policies."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    metering_table: str = Field(min_length=1)
    # MODELS (template parameter `Models`): `name[=provider-model-id],...`, the models this deployment serves.
    models: Annotated[ModelCatalog, NoDecode]
    # TIERS (Globals, built from the `<Tier>...` parameters): each tier's models, token budget, default
    # max_tokens and usage-plan limits, as JSON. See docs/CONTRACTS.md.
    tiers: dict[str, TierPolicy]
    # OpenAI's `owned_by`: who serves the model. One owner for every model of a deployment.
    models_owner: str = Field(default="metered-ai", min_length=1)
    # How long the partner that owns a key is remembered (the partner's tier is read on every request).
    partner_cache_seconds: int = Field(default=300, ge=0)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_catalog(cls, value: object) -> object:
        return ModelCatalog.parse(value) if isinstance(value, str) else value

    @field_validator("tiers")
    @classmethod
    def _some_tier(cls, value: dict[str, TierPolicy]) -> dict[str, TierPolicy]:
        if not value:
            raise ValueError("TIERS names no tier")
        return value


class ModelsSettings(AiApiSettings):
    """GET /v1/models."""


class UsageSettings(AiApiSettings):
    """GET /v1/usage."""


ModelProviderName = Literal["bedrock", "openai-compatible", "offline"]


class ChatSettings(AiApiSettings):
    """POST /v1/chat/completions: which provider serves the models, and how to reach it."""

    model_provider: ModelProviderName = "bedrock"
    # openai-compatible: the upstream's base URL (".../v1") and where its API key is kept (never in the
    # environment itself): a Secrets Manager secret or an SSM SecureString parameter.
    upstream_base_url: str = ""
    upstream_api_key_source: Literal["none", "secretsmanager", "ssm"] = "none"
    upstream_api_key_name: str = ""
    # Below the function's timeout, itself below API Gateway's 29 s, so the caller gets our 504.
    upstream_timeout_seconds: float = Field(default=20.0, gt=0, le=25)
    secret_cache_seconds: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _upstream_configured(self) -> "ChatSettings":
        if self.model_provider == "openai-compatible" and not self.upstream_base_url:
            raise ValueError("MODEL_PROVIDER openai-compatible needs UPSTREAM_BASE_URL")
        if self.upstream_api_key_source != "none" and not self.upstream_api_key_name:
            raise ValueError(f"UPSTREAM_API_KEY_SOURCE {self.upstream_api_key_source} needs UPSTREAM_API_KEY_NAME")
        if self.upstream_api_key_source == "ssm" and not self.upstream_api_key_name.startswith("/"):
            # The template's IAM grants parameter<name>: the full name, starting with /.
            raise ValueError("UPSTREAM_API_KEY_NAME must be the SSM parameter's full name, starting with /")
        return self


@cache
def models_settings() -> ModelsSettings:
    return ModelsSettings()  # fields come from the environment


@cache
def usage_settings() -> UsageSettings:
    return UsageSettings()  # fields come from the environment


@cache
def chat_settings() -> ChatSettings:
    return ChatSettings()  # fields come from the environment


class TierWebhookSettings(StackSettings):
    """POST /webhooks/billing: the billing webhook that moves partners' keys between tiers."""

    idempotency_table: str = Field(min_length=1)
    # The AI API's ledger: requests per key and period, counted as they pass (GetUsage lags up to 30 min).
    metering_table: str = Field(min_length=1)
    # TIERS (Globals): each tier's models and limits, which the operators' tier-change email lists.
    tiers: dict[str, TierPolicy] = Field(default_factory=dict)
    # The Secrets Manager secret with the signing secrets: {"stripe": [...], "standard": [...]} (never the values).
    webhook_secret_arn: str = Field(min_length=1)
    # The operators' topic: every applied change, and events parked for an unknown partner.
    alert_topic_arn: str = Field(min_length=1)
    # Template parameter CancellationMode: a cancelled partner's key is disabled, or moved to the free tier.
    cancellation_mode: Literal["disable-key", "move-to-free"] = "disable-key"
    # The free tier for move-to-free: the first of SelfServiceTiers, as at signup.
    self_service_tiers: Annotated[tuple[str, ...], NoDecode] = ("free",)
    # Template parameter StripePriceTiers: `price_id=tier,...`, overriding the prices' lookup_key.
    stripe_price_tiers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # How long an event for an unknown partner is answered "retry" before it is parked for operators.
    unknown_partner_retry_seconds: int = Field(default=3600, ge=0)
    tier_cache_seconds: int = Field(default=300, ge=0)
    # How often the signing secrets are re-read: a rotated secret is picked up within this time.
    secret_cache_seconds: int = Field(default=60, ge=0)
    # A change's lock on its partner. Longer than the function's timeout, so an expired lease means a dead holder.
    change_lease_seconds: int = Field(default=60, ge=1)
    # How long a processed event id is remembered (Stripe retries for up to 3 days).
    processed_event_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    @field_validator("self_service_tiers", mode="before")
    @classmethod
    def _split_tiers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(tier.strip() for tier in value.split(",") if tier.strip()) or ("free",)
        return value

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

    @property
    def free_tier(self) -> str:
        return self.self_service_tiers[0]


@cache
def tier_webhook_settings() -> TierWebhookSettings:
    return TierWebhookSettings()  # fields come from the environment


class QuotaMonitorSettings(StackSettings):
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
    # TIERS (Globals, the AI API's tier policies as JSON): only `token_budget` is read here (0: unlimited).
    tiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
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
        budgets = {tier: int(policy.get("token_budget") or 0) for tier, policy in self.tiers.items()}
        return {tier: budget for tier, budget in budgets.items() if budget > 0}


@cache
def quota_monitor_settings() -> QuotaMonitorSettings:
    return QuotaMonitorSettings()  # fields come from the environment
