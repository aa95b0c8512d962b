"""The offline embeddings provider: a development stand-in for an embedding model, for `make local` and tests.
Its vectors carry no meaning (README, "The offline provider"):

- a text's vector is made of SHA-256 digests of the text with a block counter (`0:text`, `1:text`...), each
  digest read as 8 unsigned 32-bit integers mapped onto [-1, 1], then scaled to unit length; so the same text
  always gets the same vector, and a shorter vector is the normalized start of a longer one;
- its size is the request's `dimensions`, else DEFAULT_DIMENSIONS;
- input tokens are the texts' whitespace-separated words, as the offline chat provider counts them (its
  estimate is the exact count, so budgets are never overshot with it).
"""

import hashlib
import math
import struct
from collections.abc import Sequence

from core.ai.embeddings import EmbeddingReply, EmbeddingRequest
from core.ai.offline_model import count_tokens

DEFAULT_DIMENSIONS = 1024
_WORDS_PER_DIGEST = 8
_HALF_RANGE = 2**31


def offline_vector(text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values += [word / _HALF_RANGE - 1 for word in struct.unpack(f">{_WORDS_PER_DIGEST}I", digest)]
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


class OfflineEmbeddings:
    """The EmbeddingsProvider port, with no network and no AWS."""

    def estimate_input_tokens(self, texts: Sequence[str]) -> int:
        return sum(count_tokens(text) for text in texts)

    def embed(self, request: EmbeddingRequest, timeout_seconds: float) -> EmbeddingReply:
        dimensions = request.dimensions or DEFAULT_DIMENSIONS
        return EmbeddingReply(
            vectors=[offline_vector(text, dimensions) for text in request.texts],
            prompt_tokens=self.estimate_input_tokens(request.texts),
        )
