"""Token metering: every request is counted in its key's ledger for the tier's quota period, and a chat
completion holds a reservation on the tier's token budget while the model works.

The reservation rule (README, "Token budgets"): a request reserves its prompt estimate plus its max_tokens
(the tier's default when the caller sends none, and always sent to the model, so the completion cannot be
longer). It is admitted only if tokens used plus tokens reserved by requests in flight plus its own
reservation fit in the budget, in one conditional write. After the model answers, the reservation is
replaced by the real usage; if the model fails, it is released and nothing is charged. So concurrent
requests can overshoot a budget only by how much their real prompt tokens exceed their estimates.

A streamed completion reserves the same, before its first byte. When its provider ends it with the usage, it
settles to that; when there is none (the provider reports none, the client disconnects, the function is about
to time out), it settles to the prompt estimate plus the completion tokens of the text generated so far, never
more than the reservation (`unreported_stream_usage`, core.ai.streaming). Nothing stays reserved.

Each reservation is recorded on the ledger item as a hold with a deadline past its function's. If neither
settle nor release ever lands (the function died, or DynamoDB kept refusing the write), the hold stays only
until a later request needs its tokens after that deadline: that request gives it back first. Such a
request's real usage is then not charged (it is in the "completed chat" log line).
"""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from core.ai.chat import ModelReply
from core.ai.ledger import LedgerEntry, LedgerReading, TokenHold
from core.ai.models import AiCaller
from core.ai.ports import TokenLedger
from core.errors import TokenBudgetExceeded
from core.periods import period_bounds, period_key, usage_bucket

# How long after its function's deadline a hold is kept before a request that needs its tokens gives it back.
HOLD_GRACE_SECONDS = 5


@dataclass(frozen=True)
class TokenReservation:
    entry: LedgerEntry
    hold: TokenHold
    # The ledger as the reserving write left it (this hold included; later requests' changes are not).
    reading: LedgerReading = field(default_factory=LedgerReading)

    @property
    def tokens(self) -> int:
        return self.hold.tokens

    def reading_after_settle(self, reply: ModelReply) -> LedgerReading:
        """`reading` with this hold replaced by what the model used: what settling it makes of the ledger."""
        return replace(
            self.reading,
            prompt_tokens=self.reading.prompt_tokens + reply.prompt_tokens,
            completion_tokens=self.reading.completion_tokens + reply.completion_tokens,
            reserved_tokens=max(self.reading.reserved_tokens - self.tokens, 0),
        )

    def reading_after_release(self) -> LedgerReading:
        return replace(self.reading, reserved_tokens=max(self.reading.reserved_tokens - self.tokens, 0))


class TokenBudgetRefusal(TokenBudgetExceeded):
    """TokenBudgetExceeded, with the ledger as the refused reservation found it (the 429's rate-limit headers)."""

    def __init__(self, needed: int, budget: int, reading: LedgerReading, resets_at: str) -> None:
        super().__init__(needed=needed, remaining=max(budget - reading.committed_tokens, 0), resets_at=resets_at)
        self.reading = reading


class TokenMeter:
    def __init__(self, ledger: TokenLedger, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._ledger = ledger
        self._clock = clock

    def entry(self, caller: AiCaller) -> LedgerEntry:
        """The caller's ledger item for the quota period API Gateway is counting now."""
        now = self._clock()
        start, reset = period_bounds(caller.policy.quota_period, now)
        return LedgerEntry(
            api_key_id=caller.api_key_id,
            period_start=start,
            period_reset=reset,
            tier=caller.tier,
            partner_id=caller.partner_id,
            bucket=usage_bucket(caller.policy.quota_period, now),
        )

    def count_request(self, entry: LedgerEntry) -> LedgerReading:
        return self._ledger.count_request(entry)

    def reserve(
        self, entry: LedgerEntry, caller: AiCaller, tokens: int, seconds_left: float, model: str | None = None
    ) -> TokenReservation:
        """Count the request and hold `tokens` of the budget until the function's deadline (`seconds_left`),
        or raise TokenBudgetRefusal, a TokenBudgetExceeded (still counted). Settling counts the tokens used by
        `model` too."""
        budget = None if caller.policy.unlimited_tokens else caller.policy.token_budget
        now = self._clock().timestamp()
        until = math.ceil(now + seconds_left + HOLD_GRACE_SECONDS)
        hold = TokenHold(id=uuid.uuid4().hex, tokens=tokens, until=until, model=model)
        admitted, reading = self._ledger.reserve(entry, hold, budget, now)
        if not admitted:
            assert budget is not None
            raise TokenBudgetRefusal(
                needed=tokens, budget=budget, reading=reading, resets_at=period_key(entry.period_reset)
            )
        return TokenReservation(entry=entry, hold=hold, reading=reading)

    def settle(self, reservation: TokenReservation, reply: ModelReply) -> None:
        self.settle_tokens(reservation, reply.prompt_tokens, reply.completion_tokens)

    def settle_tokens(self, reservation: TokenReservation, prompt_tokens: int, completion_tokens: int) -> None:
        self._ledger.settle(reservation.entry, reservation.hold, prompt_tokens, completion_tokens)

    def release(self, reservation: TokenReservation) -> None:
        self._ledger.release(reservation.entry, reservation.hold)


def unreported_stream_usage(reserved: int, prompt_estimate: int, completion_estimate: int) -> tuple[int, int]:
    """What a stream is charged when the provider reported no usage (an upstream that reports none, a client
    that went away, a function about to time out): the prompt estimate plus the completion tokens of the text
    generated so far, never more than the reservation. Returns (prompt, completion) tokens."""
    prompt = min(prompt_estimate, reserved)
    return prompt, min(completion_estimate, reserved - prompt)
