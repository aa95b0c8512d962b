"""Configuration: one pydantic settings model per function, composed from the mixins here, read from the
environment once through `load_settings`. Each capability's models live in its package (`core.<capability>.settings`).
"""

from functools import cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.tier_policy import TierPolicy


class FunctionSettings(BaseSettings):
    """The base of every settings model and mixin: read-only, and blind to the environment's other variables."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")


class StackSettings(FunctionSettings):
    """What every function of the stack knows (template Globals)."""

    stack_name: str = Field(min_length=1)
    partners_table: str = Field(min_length=1)


class TierCacheSettings(FunctionSettings):
    # How long GetUsagePlans results are reused: tiers change only with a deploy.
    tier_cache_seconds: int = Field(default=300, ge=0)


class TierChangeSettings(FunctionSettings):
    """Functions that apply tier changes (core.tier_changes): the billing webhook, the operator console."""

    # A change's lock on its partner. Longer than the function's timeout, so an expired lease means a dead holder.
    change_lease_seconds: int = Field(default=60, ge=1)


class SelfServiceTiersSettings(FunctionSettings):
    # SelfServiceTiers: the tiers an unauthenticated caller may pick at signup; the first is the default (and
    # the free tier a cancelled subscription may move to). Paid tiers come from billing.
    self_service_tiers: Annotated[tuple[str, ...], NoDecode] = ("free",)

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

    @property
    def free_tier(self) -> str:
        return self.self_service_tiers[0]


class SecretsSettings(FunctionSettings):
    # How long a secret read from Secrets Manager or SSM is reused: a rotated secret is picked up within this time.
    secret_cache_seconds: int = Field(default=300, ge=0)


class TierPoliciesSettings(FunctionSettings):
    # TIERS (Globals, built from the `<Tier>...` parameters): each tier's models, token budget, default
    # max_tokens and usage-plan limits, as JSON. See docs/CONTRACTS.md.
    tiers: dict[str, TierPolicy] = Field(default_factory=dict)


@cache
def _read(kind: type[BaseSettings]) -> BaseSettings:
    return kind()  # fields come from the environment


def load_settings[S: BaseSettings](kind: type[S]) -> S:
    """`kind`, read from the environment once per execution environment."""
    settings = _read(kind)
    assert isinstance(settings, kind)
    return settings


def forget_settings() -> None:
    """Read the environment again on the next `load_settings` (tests change it)."""
    _read.cache_clear()
