"""Adapter for an OpenAI-compatible upstream's embeddings: `POST {base}/embeddings` over a pooled urllib3
connection (the EmbeddingsProvider port).

The texts and `dimensions` pass through; the upstream is always asked for floats (every compatible server
knows them) and the answer is re-encoded as the caller asked. Errors map as for chat completions
(core.ai.adapters.openai_compatible). Without a usage object, the call is charged at the inputs' estimate.
"""

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import urllib3

from core.ai.adapters.openai_compatible import post_json
from core.ai.embeddings import EmbeddingReply, EmbeddingRequest, estimate_input_tokens, reply_vectors
from core.errors import UpstreamFailed


class OpenAICompatibleEmbeddings:
    """The EmbeddingsProvider port on an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str | None] = lambda: None,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/embeddings"
        self._api_key = api_key
        # Kept across invocations of a warm function: one TLS handshake, not one per request.
        self._pool = pool or urllib3.PoolManager(retries=False, maxsize=4)

    def estimate_input_tokens(self, texts: Sequence[str]) -> int:
        return estimate_input_tokens(texts)

    def embed(self, request: EmbeddingRequest, timeout_seconds: float) -> EmbeddingReply:
        started = time.perf_counter()
        response = post_json(self._pool, self._url, self._api_key(), embeddings_request(request), timeout_seconds)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            return reply_from_embeddings(json.loads(response.data), request, latency_ms)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamFailed("the upstream answered with a body that is not embeddings") from exc


def embeddings_request(request: EmbeddingRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.provider_model_id,
        "input": list(request.texts),
        "encoding_format": "float",
    }
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    return body


def reply_from_embeddings(answer: dict[str, Any], request: EmbeddingRequest, latency_ms: float) -> EmbeddingReply:
    data = sorted(answer["data"], key=lambda item: int(item["index"]))
    vectors = reply_vectors([item["embedding"] for item in data], len(request.texts))
    usage = answer.get("usage") or {}
    tokens = int(usage["prompt_tokens"]) if "prompt_tokens" in usage else estimate_input_tokens(request.texts)
    return EmbeddingReply(vectors=vectors, prompt_tokens=tokens, latency_ms=latency_ms)
