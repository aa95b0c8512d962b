"""The AI API's view of a request: who is calling."""

from dataclasses import dataclass

from core.tier_policy import TierPolicy


@dataclass(frozen=True)
class AiCaller:
    """Who is calling the AI API: the key API Gateway accepted, its partner, and the partner's tier now."""

    api_key_id: str
    partner_id: str
    tier: str
    policy: TierPolicy
