"""Quota standings: what one API key has consumed of its plan's quota this period, its token budget, when it
will run out at its current rate, and the highest alert threshold it has reached. Pure: no AWS, no clock.

How a standing is read from GetUsage (see README, "Quota monitoring"):
- `used` is the sum of the key's daily request counts in this plan since the period started;
- `remaining` is what API Gateway still admits today, after UpdateUsage extensions or removals;
- the allowance is the plan's limit, or `used + remaining` when an extension raised it above the limit;
- consumed = allowance - remaining. Usually that is `used`; it is more when quota was taken away (a tier move
  that carried usage over, a removal, or a plan's first-period `offset`, which API Gateway subtracts from the
  first period's limit: the monitor cannot see a plan's creation time, so it counts the offset as consumed).
On AWS, GetUsage can be up to 30 minutes behind while API Gateway enforces quotas in real time: a standing
may trail the real usage, which is why the projection never claims a time less than an hour ahead.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from core.periods import QuotaPeriod


@dataclass(frozen=True)
class PlanUsage:
    """GetUsage's answer for one key: requests through the plan this period, and what is left today."""

    api_key_id: str
    used: int
    remaining: int


def plan_usage(api_key_id: str, daily: Sequence[Sequence[int]]) -> PlanUsage:
    """From GetUsage's per-day `[used, remaining]` pairs, oldest first, ending today."""
    used = sum(int(day[0]) for day in daily)
    remaining = int(daily[-1][1]) if daily else 0
    return PlanUsage(api_key_id=api_key_id, used=used, remaining=max(remaining, 0))


@dataclass(frozen=True)
class TokenCounters:
    """The AI API's ledger for one key and period (metering table, `PERIOD#` item), when it exists."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    partner_id: str | None = None

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class QuotaStanding:
    """One key's position in its plan's quota period, as of one instant."""

    api_key_id: str
    tier: str
    period: QuotaPeriod
    period_start: datetime
    resets_at: datetime
    as_of: datetime
    used: int  # requests through this plan this period (GetUsage)
    remaining: int  # requests API Gateway still admits this period
    limit: int  # the allowance: the plan's quota, or more after an extension
    tokens_used: int | None = None  # None: the AI API has no ledger for this key and period
    token_budget: int | None = None  # None: the tier has no token budget
    partner_id: str | None = None

    @property
    def consumed(self) -> int:
        return max(self.limit - self.remaining, 0)

    @property
    def request_utilisation(self) -> float:
        """Percent of the allowance consumed."""
        return _percent(self.consumed, self.limit)

    @property
    def token_utilisation(self) -> float | None:
        """Percent of the token budget used, where both exist."""
        if self.tokens_used is None or not self.token_budget:
            return None
        return _percent(self.tokens_used, self.token_budget)

    @property
    def utilisation(self) -> float:
        """The higher of request-quota and token-budget utilisation: what alerts are about."""
        return max(self.request_utilisation, self.token_utilisation or 0.0)

    def projection(self, active_since: datetime | None = None) -> "Projection":
        """When the quota runs out at this period's rate; `active_since`: when the key came to be, if known."""
        return project(
            self.used, self.remaining, self.period_start, self.resets_at, self.as_of, active_since=active_since
        )

    @property
    def request_percent(self) -> int:
        """Whole percent of the allowance consumed, floored (exact integer arithmetic): at or above a threshold
        exactly when the threshold is reached, and 100 only when nothing is left."""
        return self.consumed * 100 // self.limit if self.limit else 100

    @property
    def token_percent(self) -> int | None:
        """Whole percent of the token budget used, floored, where both exist."""
        if self.tokens_used is None or not self.token_budget:
            return None
        return self.tokens_used * 100 // self.token_budget

    def reached(self, threshold: int) -> bool:
        """Whether utilisation is at or above `threshold` percent."""
        return self.request_percent >= threshold or (self.token_percent or 0) >= threshold

    def highest_threshold(self, thresholds: Sequence[int]) -> int | None:
        """The highest threshold reached, or None: a key that jumps from 40% to 100% reached only 100."""
        reached = [threshold for threshold in thresholds if self.reached(threshold)]
        return max(reached) if reached else None


def standing(
    usage: PlanUsage,
    *,
    tier: str,
    period: QuotaPeriod,
    bounds: tuple[datetime, datetime],
    as_of: datetime,
    plan_limit: int,
    tokens: TokenCounters | None = None,
    token_budget: int | None = None,
) -> QuotaStanding:
    return QuotaStanding(
        api_key_id=usage.api_key_id,
        tier=tier,
        period=period,
        period_start=bounds[0],
        resets_at=bounds[1],
        as_of=as_of,
        used=usage.used,
        remaining=usage.remaining,
        limit=max(plan_limit, usage.used + usage.remaining),
        tokens_used=tokens.total if tokens is not None else None,
        token_budget=token_budget or None,
        partner_id=tokens.partner_id if tokens is not None else None,
    )


# A rate is only extrapolated from at least this much time and this many requests: a burst of seconds, or a
# handful of calls, says nothing about when the rest goes (an average of 10 is still ~30% uncertain).
MIN_PROJECTION_WINDOW = timedelta(hours=1)
MIN_PROJECTION_REQUESTS = 10
# Closer than this, a clock time is false precision: GetUsage can lag 30 minutes and runs are minutes apart.
SOON = timedelta(hours=1)


class Outlook(StrEnum):
    EXHAUSTED = "exhausted"  # nothing left now
    SOON = "soon"  # less than SOON ahead at the current rate
    AT = "at"  # at a projected time before the reset
    NOT_BEFORE_RESET = "not_before_reset"  # not this period at the current rate (or nothing used)
    TOO_EARLY = "too_early"  # too little time or too few requests to extrapolate


@dataclass(frozen=True)
class Projection:
    outlook: Outlook
    at: datetime | None = None  # only for EXHAUSTED (now) and AT


def project(
    used: int,
    remaining: int,
    period_start: datetime,
    resets_at: datetime,
    as_of: datetime,
    *,
    active_since: datetime | None = None,
) -> Projection:
    """Linear, at the average rate since the later of the period start and `active_since` (a key created
    mid-period has had less time): a time only when that span is at least an hour and holds at least 10
    requests, and the time is at least an hour ahead."""
    if remaining <= 0:
        return Projection(Outlook.EXHAUSTED, as_of)
    if used <= 0:
        return Projection(Outlook.NOT_BEFORE_RESET)
    window = as_of - max(period_start, active_since or period_start)
    if window < MIN_PROJECTION_WINDOW or used < MIN_PROJECTION_REQUESTS:
        return Projection(Outlook.TOO_EARLY)
    runs_out = as_of + window * remaining / used
    if runs_out >= resets_at:
        return Projection(Outlook.NOT_BEFORE_RESET)
    if runs_out - as_of < SOON:
        return Projection(Outlook.SOON)
    return Projection(Outlook.AT, runs_out)


def _percent(part: int, whole: int) -> float:
    if whole <= 0:
        return 100.0
    return part * 100 / whole


@dataclass(frozen=True)
class KeyQuotaReading:
    """What the monitor stores per key and period (`QUOTA#<period start>`) for the AI API's GET /v1/usage and
    for the next run: `used` (consumed) + `remaining` = `limit`. Rewritten only when a value changes."""

    api_key_id: str
    period_start: datetime
    tier: str
    used: int
    remaining: int
    limit: int
    as_of: str  # ISO 8601, when these values were read
    requests: int  # requests through the plan this period, as GetUsage counts them
    tokens_used: int | None
    alerted_threshold: int | None  # the highest threshold alerted for this period
    expires_at: int  # epoch seconds (DynamoDB TTL)

    def same_values(self, other: "KeyQuotaReading | None") -> bool:
        if other is None:
            return False
        return (self.tier, self.used, self.remaining, self.limit, self.requests, self.tokens_used) == (
            other.tier,
            other.used,
            other.remaining,
            other.limit,
            other.requests,
            other.tokens_used,
        ) and self.alerted_threshold == other.alerted_threshold


@dataclass(frozen=True)
class PeriodRecords:
    """What the metering table holds for one key and period before a run: the AI API's counters and the
    previous run's reading (each None when absent)."""

    tokens: TokenCounters | None = None
    reading: KeyQuotaReading | None = None


@dataclass(frozen=True)
class AlertClaim:
    """One alert (`ALERT#<period start>#<threshold>`), as a run claims it."""

    api_key_id: str
    period_start: datetime
    threshold: int
    tier: str
    partner_id: str
    utilisation: float
    expires_at: int  # epoch seconds: the period's reset plus a day


@dataclass
class AlertState:
    """A claimed alert and what has been delivered for it (possibly by an earlier run that died)."""

    claim: AlertClaim
    claimed_until: int
    operator_sent: bool = False
    partner_email: str | None = None  # "sent", "failed" (not retried), "not_requested"; None: not done yet

    @property
    def done(self) -> bool:
        return self.operator_sent and self.partner_email is not None


@dataclass(frozen=True)
class ClaimResult:
    """A claim's outcome: the state to deliver from, or why there is nothing to do."""

    state: AlertState | None
    already_sent: bool = False  # False with no state: another run holds the claim right now


@dataclass
class TierSummary:
    """One tier's keys in one run: what the per-tier metrics publish."""

    tier: str
    keys: int = 0
    requests: int = 0
    tokens: int = 0
    max_utilisation: float = 0.0
    over_threshold: dict[int, int] = field(default_factory=dict)  # threshold -> keys at or above it


def summarise(tiers: Sequence[str], standings: Sequence[QuotaStanding], thresholds: Sequence[int]) -> list[TierSummary]:
    """A summary per tier read (tiers without keys included, so their metrics read 0 rather than missing)."""
    summaries = {tier: TierSummary(tier, over_threshold=dict.fromkeys(thresholds, 0)) for tier in tiers}
    for item in standings:
        summary = summaries.setdefault(item.tier, TierSummary(item.tier, over_threshold=dict.fromkeys(thresholds, 0)))
        summary.keys += 1
        summary.requests += item.used
        summary.tokens += item.tokens_used or 0
        summary.max_utilisation = max(summary.max_utilisation, item.utilisation)
        for threshold in thresholds:
            if item.reached(threshold):
                summary.over_threshold[threshold] += 1
    return list(summaries.values())
