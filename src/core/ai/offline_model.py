"""The offline provider: a development stand-in for a model, for `make local` and tests. It is not a model.

It answers deterministically and counts tokens by a rule anyone can check by hand (README, "The offline
provider"):
- a token is a whitespace-separated word;
- prompt tokens are the words of every message, system and developer messages included;
- the reply is the last user message's words, joined by single spaces, cut before the first stop sequence
  (finish_reason "stop") or after max_tokens words (finish_reason "length");
- completion tokens are the reply's words.
Its prompt estimate is the exact count, so budgets are never overshot with it.
"""

from core.ai.chat import FinishReason, ModelReply, ModelRequest


def count_tokens(text: str) -> int:
    return len(text.split())


class OfflineModel:
    """The ModelProvider port, with no network and no AWS."""

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
