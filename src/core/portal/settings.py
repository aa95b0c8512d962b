"""The portal's settings (PortalFunction): the tiers a visitor may pick and their limits, the model catalog,
whether signup can email a partner, and where each tier is bought."""

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from core.settings import SelfServiceTiersSettings, StackSettings, TierCacheSettings, TierPoliciesSettings
from core.tier_policy import ModelCatalog


class PortalSettings(SelfServiceTiersSettings, TierPoliciesSettings):
    """GET /portal and its assets."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    # MODELS: the deployment's catalog (the models a tier lists, with `*` spelled out).
    models: Annotated[ModelCatalog, NoDecode]
    # PartnerAlertSender: without one, signup sends no confirmation link and no partner gets alert emails, so
    # the page does not offer the opt-in.
    partner_alert_sender: str = ""
    # SignupDoubleOptIn: the key arrives by email link, not in the page.
    double_opt_in: bool = False
    # PortalUpgradeUrls: `tier=https://...,tier=https://...`, where a partner buys each tier (empty: no button).
    portal_upgrade_urls: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_catalog(cls, value: object) -> object:
        return ModelCatalog.parse(value) if isinstance(value, str) else value

    @field_validator("portal_upgrade_urls", mode="before")
    @classmethod
    def _parse_upgrade_urls(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        urls = {}
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            tier, separator, url = entry.partition("=")
            if not separator:
                raise ValueError(f"PORTAL_UPGRADE_URLS entry {entry!r} is not tier=https://...")
            urls[tier.strip()] = url.strip()
        return urls

    @field_validator("portal_upgrade_urls")
    @classmethod
    def _https_only(cls, value: dict[str, str]) -> dict[str, str]:
        # The page puts these in links: a javascript: or data: URL would run in the portal's origin.
        for tier, url in value.items():
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.netloc:
                raise ValueError(f"the upgrade URL of {tier} must be an https:// URL, not {url!r}")
        return value

    @model_validator(mode="after")
    def _known_tiers(self) -> "PortalSettings":
        unknown = sorted((set(self.self_service_tiers) | set(self.portal_upgrade_urls)) - set(self.tiers))
        if unknown:
            raise ValueError(f"TIERS has no policy for {', '.join(unknown)}")
        return self


class KeyRecoverySettings(StackSettings, TierCacheSettings):
    """POST /portal/recover and /portal/recover/key: lost-key recovery (core.portal.recovery)."""

    metering_table: str = Field(min_length=1)
    # PartnerAlertSender: the sender of recovery links (empty: no recovery, and the page does not offer it).
    partner_alert_sender: str = ""
    recovery_link_seconds: int = Field(default=900, ge=60, le=3600)
    recovery_per_email_per_hour: int = Field(default=3, ge=1)
    recovery_per_source_per_hour: int = Field(default=10, ge=1)
    # No answer to a link request comes sooner (the same timing for a registered address as for any other).
    recovery_answer_floor_seconds: float = Field(default=1.0, ge=0, le=10)
