"""The offline provider: a development stand-in for a model, for `make local` and tests. It is not a model.

It answers deterministically and counts tokens by a rule anyone can check by hand (README, "The offline
provider"):
- a token is a whitespace-separated word;
- prompt tokens are the words of every message, system and developer messages included;
- the reply is the last user message's words, joined by single spaces, cut before the first stop sequence
  (finish_reason "stop") or after max_tokens words (finish_reason "length");
- completion tokens are the reply's words.
Its prompt estimate is the exact count, so budgets are never overshot with it.

Streamed, the same reply comes one word per TextDelta (the first bare, each next one with its leading space,
so the deltas concatenate to the non-streamed text), `chunk_delay_seconds` apart (template parameter
OfflineStreamChunkDelayMs), then a StreamEnd with the same usage.
"""

import time
from collections.abc import Iterator

from core.ai.chat import FinishReason, ModelReply, ModelRequest, StreamEnd, StreamEvent, TextDelta


def count_tokens(text: str) -> int:
    return len(text.split())


class OfflineModel:
    """The ModelProvider port, with no network and no AWS."""

    def __init__(self, chunk_delay_seconds: float = 0.0) -> None:
        self._chunk_delay = chunk_delay_seconds

    def estimate_completion_tokens(self, text: str) -> int:
        return count_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        reply = self.complete(request, timeout_seconds)
        for index, word in enumerate(reply.text.split()):
            if index and self._chunk_delay:
                time.sleep(self._chunk_delay)
            yield TextDelta(word if index == 0 else f" {word}")
        yield StreamEnd(reply.finish_reason, reply.prompt_tokens, reply.completion_tokens)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return sum(count_tokens(text) for text in request.texts())

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        last_user = next((turn.text for turn in reversed(request.turns) if turn.role == "user"), "")
        text = " ".join(last_user.split())
        finish_reason: FinishReason = "stop"
        cuts = [text.find(stop) for stop in request.stop if stop and stop in text]
        if cuts:
            text = text[: min(cuts)].rstrip()
        words = text.split()
        if len(words) > request.max_tokens:
            words = words[: request.max_tokens]
            finish_reason = "length"
        return ModelReply(
            text=" ".join(words),
            finish_reason=finish_reason,
            prompt_tokens=self.estimate_prompt_tokens(request),
            completion_tokens=len(words),
        )
