"""A key's standing in its quota period, and OpenAI's `x-ratelimit-*` headers made from it.

`standing` is the one computation behind both GET /v1/usage's numbers and the headers on every /v1/* answer,
so the two agree for the same ledger reading. "Requests" are the usage plan's quota for the tier's quota
period (DAY, WEEK, MONTH), not a per-minute window: API Gateway's throttle (rate, burst) is separate and not
reported here. "Tokens" are the tier's token budget for the same period. Both reset when the period does.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from core.ai.ledger import LedgerEntry, LedgerReading, QuotaReading
from core.observability import logger
from core.tier_policy import TierPolicy

# The quota monitor's reading changes at most once per run (QuotaMonitorSchedule, 15 minutes by default); each
# function remembers it this long per key and period, so a /v1/* answer costs no extra DynamoDB read.
QUOTA_READING_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Standing:
    """What a key has used and has left of its quota period as of `as_of`. `token_budget` None: unlimited."""

    requests_used: int
    requests_remaining: int
    requests_limit: int
    requests_source: Literal["ledger", "quota_monitor"]
    quota_reading_as_of: str | None
    token_budget: int | None
    tokens_remaining: int | None
    resets_at: datetime
    as_of: datetime


def standing(
    policy: TierPolicy, entry: LedgerEntry, reading: LedgerReading, quota: QuotaReading | None, now: datetime
) -> Standing:
    """Requests against the quota API Gateway enforces, tokens against the tier's budget.

    Requests come from our ledger; when the quota monitor has read API Gateway's usage for this period, its
    reading is the base (it includes operator grants with UpdateUsage) and requests the ledger saw since are
    taken off what it found remaining.
    """
    budget = None if policy.unlimited_tokens else policy.token_budget
    tokens_remaining = None if budget is None else max(budget - reading.committed_tokens, 0)
    source: Literal["ledger", "quota_monitor"]
    if quota is None:
        # After a key rotation, the quota its predecessor consumed counts (API Gateway's remaining carries it).
        limit, used = policy.quota_limit, reading.requests + reading.carried_requests
        remaining, source = max(limit - used, 0), "ledger"
    else:
        since = max(reading.requests - quota.used, 0)
        limit, used = quota.limit, max(quota.used, reading.requests)
        remaining, source = max(quota.remaining - since, 0), "quota_monitor"
    return Standing(
        requests_used=used,
        requests_remaining=remaining,
        requests_limit=limit,
        requests_source=source,
        quota_reading_as_of=None if quota is None else quota.as_of,
        token_budget=budget,
        tokens_remaining=tokens_remaining,
        resets_at=entry.period_reset,
        as_of=now,
    )


def rate_limit_headers(standing: Standing) -> dict[str, str]:
    """OpenAI's six headers; without a token budget, only the three about requests (OpenAI has no spelling
    for "unlimited", and a made-up value such as -1 misleads the clients that pace themselves on these)."""
    reset = reset_duration(standing.resets_at - standing.as_of)
    headers = {
        "x-ratelimit-limit-requests": str(standing.requests_limit),
        "x-ratelimit-remaining-requests": str(standing.requests_remaining),
        "x-ratelimit-reset-requests": reset,
    }
    if standing.token_budget is not None and standing.tokens_remaining is not None:
        headers["x-ratelimit-limit-tokens"] = str(standing.token_budget)
        headers["x-ratelimit-remaining-tokens"] = str(standing.tokens_remaining)
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


def reset_duration(delta: timedelta) -> str:
    """A time until a reset as OpenAI spells it, Go's `time.Duration` string: `20ms`, `1s`, `1.5s`, `6m0s`,
    `1h2m3s`. Go has no day unit, so a month reads `743h59m59.5s` (what Go's ParseDuration and the clients'
    h/m/s/ms parsers read). Rounded up to the millisecond: waiting that long is never too early."""
    milliseconds = max(math.ceil(delta / timedelta(milliseconds=1)), 0)
    if milliseconds < 1000:
        return f"{milliseconds}ms" if milliseconds else "0s"
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, fraction = divmod(rest, 1000)
    spelled = f"{seconds}.{fraction:03d}".rstrip("0") if fraction else str(seconds)
    if hours:
        return f"{hours}h{minutes}m{spelled}s"
    if minutes:
        return f"{minutes}m{spelled}s"
    return f"{spelled}s"


class QuotaReadingSource(Protocol):
    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None: ...


class QuotaReadings:
    """The quota monitor's reading per key and period, remembered for `ttl_seconds`.

    A reading that cannot be read (DynamoDB refusing, a function without the permission) is remembered as
    none, and the headers say what the ledger alone says: they never fail an answer.
    """

    def __init__(
        self, ledger: QuotaReadingSource, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ledger = ledger
        self._ttl = ttl_seconds
        self._clock = clock
        self._readings: dict[tuple[str, datetime], tuple[float, QuotaReading | None]] = {}

    def get(self, entry: LedgerEntry) -> QuotaReading | None:
        now = self._clock()
        key = (entry.api_key_id, entry.period_start)
        remembered = self._readings.get(key)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        try:
            reading = self._ledger.quota_reading(entry)
        except Exception as exc:  # the headers are advice: the answer they go on must not fail
            logger.warning("could not read the quota reading", api_key_id=entry.api_key_id, reason=type(exc).__name__)
            reading = None
        self._readings[key] = (now + self._ttl, reading)
        return reading
