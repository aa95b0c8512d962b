"""OpenAI's rate-limit headers from a key's standing: the reset durations in OpenAI's (Go's) spelling, the
numbers GET /v1/usage reports, and the quota monitor's reading remembered between requests."""

import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from core.ai.ledger import LedgerEntry, LedgerReading, QuotaReading
from core.ai.rate_limits import QuotaReadings, rate_limit_headers, reset_duration, standing
from core.tier_policy import TierPolicy

# Go's time.ParseDuration grammar, restricted to the units OpenAI's headers use: what clients parse.
GO_DURATION = re.compile(r"^(?:0s|\d+ms|(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?s)$")
PERIOD_START = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD_RESET = datetime(2026, 4, 1, tzinfo=UTC)
ENTRY = LedgerEntry("key1", PERIOD_START, PERIOD_RESET, "pro", "partner1")


def policy(token_budget: int = 1000, quota_limit: int = 100) -> TierPolicy:
    return TierPolicy(
        models=("*",),
        token_budget=token_budget,
        default_max_tokens=10,
        rate_limit=5,
        burst_limit=10,
        quota_limit=quota_limit,
        quota_period="MONTH",
    )


@pytest.mark.parametrize(
    ("delta", "spelled"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=-3), "0s"),
        (timedelta(microseconds=1), "1ms"),
        (timedelta(milliseconds=20), "20ms"),
        (timedelta(microseconds=999_001), "1s"),
        (timedelta(milliseconds=999), "999ms"),
        (timedelta(seconds=1), "1s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(milliseconds=8640), "8.64s"),
        (timedelta(milliseconds=59_999), "59.999s"),
        (timedelta(minutes=1), "1m0s"),
        (timedelta(minutes=6), "6m0s"),
        (timedelta(hours=1), "1h0m0s"),
        (timedelta(hours=1, minutes=2, seconds=3), "1h2m3s"),
        (timedelta(days=1), "24h0m0s"),
        (timedelta(days=31), "744h0m0s"),
        (timedelta(days=30, hours=23, minutes=59, seconds=59, milliseconds=500), "743h59m59.5s"),
    ],
)
def test_resets_are_spelled_as_openai_spells_them(delta: timedelta, spelled: str) -> None:
    # Given a time until a reset; When it is spelled; Then it is OpenAI's Go duration, rounded up to the
    # millisecond (a client that waits that long is past the reset), with hours for days
    assert reset_duration(delta) == spelled
    assert GO_DURATION.match(spelled)


def test_the_headers_carry_the_quota_and_the_token_budget_of_the_period() -> None:
    # Given 7 requests and 300 tokens committed (250 used, 50 reserved), 10 hours before the month resets
    reading = LedgerReading(requests=7, prompt_tokens=200, completion_tokens=50, reserved_tokens=50)
    now = PERIOD_RESET - timedelta(hours=10)

    # When the headers are made
    headers = rate_limit_headers(standing(policy(), ENTRY, reading, None, now))

    # Then they are OpenAI's six, integers and durations
    assert headers == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "93",
        "x-ratelimit-reset-requests": "10h0m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "700",
        "x-ratelimit-reset-tokens": "10h0m0s",
    }


def test_an_unlimited_token_budget_sends_no_token_headers() -> None:
    # Given a tier without a token budget
    reading = LedgerReading(requests=1, prompt_tokens=10**9)

    # When the headers are made
    headers = rate_limit_headers(standing(policy(token_budget=0), ENTRY, reading, None, PERIOD_START))

    # Then only the request quota is stated: there is no token limit to report
    assert set(headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert headers["x-ratelimit-reset-requests"] == "744h0m0s"


def test_what_remains_is_never_negative() -> None:
    # Given a key past both limits (a request API Gateway let through, an underestimated prompt)
    reading = LedgerReading(requests=101, prompt_tokens=1200)

    # When the headers are made
    headers = rate_limit_headers(standing(policy(), ENTRY, reading, None, PERIOD_START))

    # Then nothing remains, rather than a negative count clients would misread
    assert (headers["x-ratelimit-remaining-requests"], headers["x-ratelimit-remaining-tokens"]) == ("0", "0")


def test_the_quota_monitors_reading_is_the_base_for_requests() -> None:
    # Given a monitor reading after 2 requests with a grant (1008 left of 1010), and 5 requests in the ledger
    quota = QuotaReading(used=2, remaining=1008, limit=1010, as_of="2026-03-10T12:00:00Z")

    # When the standing is read
    found = standing(policy(quota_limit=1000), ENTRY, LedgerReading(requests=5), quota, PERIOD_START)

    # Then the 3 requests the ledger saw since are taken off what the monitor found left
    assert (found.requests_limit, found.requests_used, found.requests_remaining) == (1010, 5, 1005)
    assert (found.requests_source, found.quota_reading_as_of) == ("quota_monitor", "2026-03-10T12:00:00Z")


class CountingLedger:
    """The quota reading side of the ledger: counts reads, or fails them like DynamoDB refusing access."""

    def __init__(self, reading: QuotaReading | None, error: Exception | None = None) -> None:
        self.reading, self.error, self.reads = reading, error, 0

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.reading


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_quota_reading_is_read_once_per_key_and_period_while_it_is_fresh() -> None:
    # Given a quota reading remembered for 60 s
    ledger, clock = CountingLedger(QuotaReading(1, 9, 10, "2026-03-10T12:00:00Z")), Clock()
    readings = QuotaReadings(ledger, ttl_seconds=60, clock=clock)

    # When three requests of one key need it within a minute, then one more after it
    found = [readings.get(ENTRY) for _ in range(3)]
    clock.now += 61
    readings.get(ENTRY)

    # Then DynamoDB was read twice: no extra read per request
    assert found == [ledger.reading] * 3
    assert ledger.reads == 2


def test_a_quota_reading_that_cannot_be_read_leaves_the_ledgers_numbers(powertools_log: io.StringIO) -> None:
    # Given a function that may not read the quota monitor's item
    ledger = CountingLedger(None, error=RuntimeError("AccessDeniedException"))
    readings = QuotaReadings(ledger, ttl_seconds=60, clock=Clock())

    # When a request needs it, twice
    found = [readings.get(ENTRY), readings.get(ENTRY)]

    # Then the answer is not failed: there is no reading (the ledger's numbers), tried once, logged
    assert found == [None, None]
    assert ledger.reads == 1
    [line] = [json.loads(line) for line in powertools_log.getvalue().splitlines()]
    assert (line["level"], line["message"]) == ("WARNING", "could not read the quota reading")


# --- Usage extensions and carried tokens (issue 13) --------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_an_extension_raises_the_request_limit_and_the_token_budget_at_once() -> None:
    # Given a key at its quota of 100 and 900 of 1000 tokens used, then an extension of 5 requests and 300 tokens
    reading = LedgerReading(
        requests=100, prompt_tokens=500, completion_tokens=400, extension_requests=5, extension_tokens=300
    )

    found = standing(policy(), ENTRY, reading, None, NOW)

    assert (found.requests_limit, found.requests_remaining, found.requests_source) == (105, 5, "ledger")
    assert (found.token_budget, found.tokens_remaining) == (1300, 400)


def test_a_quota_reading_older_than_the_extension_gives_way_to_the_ledger() -> None:
    reading = LedgerReading(requests=100, extension_requests=5, extension_at="2026-03-10T11:00:00+00:00")
    before = QuotaReading(used=100, remaining=0, limit=100, as_of="2026-03-10T10:45:00+00:00")
    after = QuotaReading(used=100, remaining=5, limit=105, as_of="2026-03-10T11:15:00+00:00")

    stale = standing(policy(), ENTRY, reading, before, NOW)
    fresh = standing(policy(), ENTRY, reading, after, NOW)

    assert (stale.requests_limit, stale.requests_remaining, stale.requests_source) == (105, 5, "ledger")
    assert (fresh.requests_limit, fresh.requests_remaining, fresh.requests_source) == (105, 5, "quota_monitor")


def test_tokens_carried_from_a_previous_key_count_as_used() -> None:
    reading = LedgerReading(prompt_tokens=100, completion_tokens=100, carried_tokens=600)
    found = standing(policy(token_budget=1000), ENTRY, reading, None, NOW)
    assert (found.token_budget, found.tokens_remaining) == (1000, 200)
    assert reading.committed_tokens == 800
