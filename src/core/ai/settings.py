"""The AI API's settings: what its three functions share (the ledger, the model catalog, the tiers' policies),
and how the chat function reaches its model provider."""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from core.settings import SecretsSettings, StackSettings, TierPoliciesSettings
from core.tier_policy import ModelCatalog, TierPolicy


class AiApiSettings(StackSettings, TierPoliciesSettings):
    """What the AI API's functions share: the ledger, the model catalog and the tiers' AI policies."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    metering_table: str = Field(min_length=1)
    # MODELS (template parameter `Models`): `name[=provider-model-id],...`, the models this deployment serves.
    models: Annotated[ModelCatalog, NoDecode]
    # TIERS: required here (the AI API serves no tier it has no policy for).
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


class ChatSettings(AiApiSettings, SecretsSettings):
    """POST /v1/chat/completions: which provider serves the models, and how to reach it."""

    model_provider: ModelProviderName = "bedrock"
    # openai-compatible: the upstream's base URL (".../v1") and where its API key is kept (never in the
    # environment itself): a Secrets Manager secret or an SSM SecureString parameter.
    upstream_base_url: str = ""
    upstream_api_key_source: Literal["none", "secretsmanager", "ssm"] = "none"
    upstream_api_key_name: str = ""
    # Below the function's timeout, itself below API Gateway's 29 s, so the caller gets our 504.
    upstream_timeout_seconds: float = Field(default=20.0, gt=0, le=25)
    # offline: the wait between two streamed chunks (template parameter OfflineStreamChunkDelayMs).
    offline_stream_chunk_delay_ms: int = Field(default=0, ge=0, le=10_000)

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


class EmbeddingsSettings(ChatSettings):
    """POST /v1/embeddings: the same provider, reached the same way, as chat completions."""
