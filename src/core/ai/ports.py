"""What the AI API needs from the outside world: its partners, a model, and its ledger."""

from collections.abc import Iterator, Sequence
from typing import Protocol

from core.ai.chat import ModelReply, ModelRequest, StreamEvent
from core.ai.embeddings import EmbeddingReply, EmbeddingRequest
from core.ai.ledger import LedgerEntry, LedgerReading, QuotaReading, TokenHold
from core.models import Partner


class PartnerLookup(Protocol):
    """The partners table, read: a partner by id, or by the API key it owns."""

    def get(self, partner_id: str) -> Partner | None: ...

    def get_by_api_key_id(self, api_key_id: str) -> Partner | None: ...


class ModelProvider(Protocol):
    """A model behind the AI API (Bedrock, an OpenAI-compatible upstream, the offline provider).

    `complete` raises UpstreamRejected, UpstreamThrottled, UpstreamFailed, UpstreamTimedOut or
    ProviderMisconfigured (core.errors); no other outcome is charged or expected.
    """

    def estimate_prompt_tokens(self, request: ModelRequest) -> int: ...

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply: ...

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        """The reply as the model produces it: TextDelta and ToolCallDelta events, then one StreamEnd.

        Raises the same errors as `complete`, before the first event or between two; `timeout_seconds` bounds
        the wait for each event, not the whole stream. Closing the iterator early (the caller went away, the
        function is about to time out) stops the provider's work."""
        ...

    def estimate_completion_tokens(self, text: str) -> int:
        """The completion tokens in `text`, as this provider counts them: what a stream that ended without the
        provider's usage (a disconnect, a timeout, an upstream that reports none) is charged for."""
        ...


class TokenLedger(Protocol):
    """The AI API's per-key, per-period ledger in the metering table, and the quota monitor's readings."""

    def count_request(self, entry: LedgerEntry) -> LedgerReading: ...

    def reserve(
        self, entry: LedgerEntry, hold: TokenHold, budget: int | None, now: float
    ) -> tuple[bool, LedgerReading]:
        """Count the request and record `hold` if its tokens fit in `budget` (None: unlimited), giving back
        holds whose `until` is before `now` when they are in the way: whether it was held, and the counters
        after. The request is counted either way."""
        ...

    def settle(self, entry: LedgerEntry, hold: TokenHold, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace the hold by what the model used; nothing if the hold is already gone."""
        ...

    def release(self, entry: LedgerEntry, hold: TokenHold) -> None:
        """Give the hold back; nothing if it is already gone."""
        ...

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None: ...


class EmbeddingsProvider(Protocol):
    """An embedding model behind the AI API (Bedrock, an OpenAI-compatible upstream, the offline provider).

    `embed` raises the same errors as ModelProvider.complete (core.errors), and InvalidRequest for a text the
    model cannot take."""

    def estimate_input_tokens(self, texts: Sequence[str]) -> int: ...

    def embed(self, request: EmbeddingRequest, timeout_seconds: float) -> EmbeddingReply: ...
