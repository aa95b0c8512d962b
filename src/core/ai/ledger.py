"""The AI API's ledger as the domain sees it: which item (key and quota period), what it holds, and the
quota monitor's latest reading of API Gateway's quota. Plain data; the table is core.ai.adapters.metering_table.
"""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LedgerEntry:
    """One key's ledger item for one quota period (`KEY#<key id>`, `PERIOD#<period start>`)."""

    api_key_id: str
    period_start: datetime
    period_reset: datetime
    tier: str
    partner_id: str
    # The slice of the period this request counts in for the usage chart (core.periods.usage_bucket); None
    # counts it in the period's totals only.
    bucket: datetime | None = None


@dataclass(frozen=True)
class UsageBucket:
    """One slice of a period (an hour of a day, a day of a week or month): the requests counted in it and the
    tokens of the completions that started in it."""

    start: datetime
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class LedgerReading:
    """A ledger item's counters. Reserved tokens are held by requests still waiting for their model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reserved_tokens: int = 0
    # Tokens the key's predecessor committed this period before a rotation (core.key_rotation): used, and in
    # the item's committed_tokens from the start, so the reservation's conditional write counts them.
    carried_tokens: int = 0
    # The quota its predecessor had consumed this period (not in `requests`, this key's own count).
    carried_requests: int = 0
    # The period so far, slice by slice, oldest first (only slices with something counted).
    buckets: tuple[UsageBucket, ...] = ()

    @property
    def used_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.carried_tokens

    @property
    def committed_tokens(self) -> int:
        """What counts against the budget now: tokens used plus tokens reserved."""
        return self.used_tokens + self.reserved_tokens


@dataclass(frozen=True)
class TokenHold:
    """One request's reservation, recorded on its ledger item until it is settled or released. `until` (epoch
    seconds) is past the deadline of the function that made it: after that nobody can settle it, and the next
    reservation that does not fit gives it back."""

    id: str
    tokens: int
    until: int
    # The model the request calls: settling adds its tokens to that model's counters too (never stored on the hold).
    model: str | None = None

    @property
    def attribute(self) -> str:
        return f"hold_{self.id}"


@dataclass(frozen=True)
class QuotaReading:
    """The quota monitor's latest GetUsage reading for a key and period (`QUOTA#<period start>`)."""

    used: int
    remaining: int
    limit: int
    as_of: str
