"""Configuration: one pydantic model per function, read from the environment once."""

from functools import cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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


class ModelsSettings(BaseSettings):
    """GET /v1/models: the model ids this deployment serves (template parameter `Models`)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    models: Annotated[tuple[str, ...], NoDecode] = Field(min_length=1)
    # OpenAI's `owned_by`: who serves the model. One owner for every model of a deployment.
    models_owner: str = Field(default="metered-ai", min_length=1)

    @field_validator("models", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(model.strip() for model in value.split(",") if model.strip())
        return value


@cache
def models_settings() -> ModelsSettings:
    return ModelsSettings()  # fields come from the environment
