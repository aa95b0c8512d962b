"""What the portal's key recovery needs from the partners table (core.portal.adapters.recovery)."""

from dataclasses import dataclass
from typing import Literal, Protocol

from core.models import Partner


@dataclass(frozen=True)
class ClaimedLink:
    partner_id: str
    expires_at: int  # epoch s, as the link was stored (put back as it was if the re-issue fails)


class RecoveryRecords(Protocol):
    def partner_by_email(self, email: str) -> Partner | None:
        """The partner registered with this (lower-cased) address, or None."""
        ...

    def partner(self, partner_id: str) -> Partner | None: ...

    def count_request(self, kind: Literal["email", "source"], value: str, now: float, limit: int) -> bool:
        """Count one request of `value` in the current hour; False when `limit` were already counted."""
        ...

    def add_link(self, token_hash: str, partner_id: str, expires_at: int) -> None: ...

    def claim_link(self, token_hash: str, now: float) -> ClaimedLink | None:
        """Delete the link if it exists and has not expired (one use); what it held, or None."""
        ...
