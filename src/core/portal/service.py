"""What the portal serves: its pages and assets (text files under src/portal_assets/, shipped with the code),
the deployment's facts the pages show (`config.json`), and the security headers on every answer."""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.portal.settings import PortalSettings
from core.settings import load_settings

ASSETS_DIR = Path(__file__).resolve().parents[2] / "portal_assets"
INDEX = "index.html"
CONFIG = "config.json"

# Text only: API Gateway passes a Lambda proxy's string body through as it is, so no BinaryMediaTypes (which
# would apply to the whole API, the AI routes included) and no base64 (docs/decisions.md, partner portal).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# What an asset may be called: one path segment, no dot files, a known extension.
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(html|css|js|svg)$")

# Scripts and styles come from our own files only (no inline script or style, no other origin), the page
# talks only to its own API, and no other site may frame it (the key is shown in it).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # frame-ancestors' predecessor, for browsers that do not read CSP's.
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # The signup page shows a key once: no cache keeps it, and a deploy's new tiers show at once.
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str


@cache
def _assets() -> dict[str, Asset]:
    """Every servable file, read once per execution environment."""
    found = {}
    for path in ASSETS_DIR.iterdir():
        if path.is_file() and ASSET_NAME.match(path.name):
            found[path.name] = Asset(path.read_text(encoding="utf-8"), CONTENT_TYPES[path.suffix])
    return found


def asset(name: str) -> Asset | None:
    """The asset called `name` (a file of the assets folder, never a path), or None."""
    return _assets().get(name)


def portal_config(settings: PortalSettings) -> dict[str, Any]:
    """The deployment's facts the pages show: the self-service tiers (the first is signup's default) with their
    limits and models, whether alert emails can be offered, and where each tier is bought."""
    tiers = []
    for name in settings.self_service_tiers:
        policy = settings.tiers[name]
        tiers.append(
            {
                "name": name,
                "limits": {
                    "rate_limit": policy.rate_limit,
                    "burst_limit": policy.burst_limit,
                    "quota_limit": policy.quota_limit,
                    "quota_period": policy.quota_period,
                    "token_budget": policy.token_budget,
                    # The chat completions method throttle inside the plan (None: the plan's own applies).
                    "chat_completions": policy.chat_completions_throttle,
                },
                "models": [model.name for model in policy.allowed_models(settings.models)],
            }
        )
    upgrades = [{"tier": tier, "url": url} for tier, url in settings.portal_upgrade_urls.items()]
    return {
        "tiers": tiers,
        "alert_emails": bool(settings.partner_alert_sender),
        "double_opt_in": settings.double_opt_in,
        # Lost-key recovery emails a link: offered only with a sender.
        "key_recovery": bool(settings.partner_alert_sender),
        "upgrades": upgrades,
    }


def deployment_config() -> dict[str, Any]:
    return portal_config(load_settings(PortalSettings))
