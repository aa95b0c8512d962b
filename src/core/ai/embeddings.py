"""Embeddings: OpenAI's `POST /v1/embeddings` request (validated), the provider-neutral request and reply the
embedding providers work with, and OpenAI's response shape.

`input` is a string or a list of 1 to 2048 non-empty strings. Token arrays (lists of integers) are refused
with a 400: every provider here takes text, and turning OpenAI's token ids back into text needs OpenAI's
tokenizer. `user` and fields OpenAI may add are ignored.
"""

import base64
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.ai.chat import BYTES_PER_TOKEN_ESTIMATE
from core.errors import InvalidRequest

MAX_INPUTS = 2048
# OpenAI's text-embedding-3-large answers 3072; no model here answers more than 8192.
MAX_DIMENSIONS = 8192
# Lambda's response payload limit is 6 MB (6,291,456 bytes) for the whole proxy answer: the body stays below.
MAX_RESPONSE_BYTES = 6_000_000
# The fewest bytes a float value takes in the response ("0.01234567,"): a request that would certainly not fit
# is refused before the model is called.
MIN_FLOAT_VALUE_BYTES = 10

EncodingFormat = Literal["float", "base64"]


class EmbeddingsRequest(BaseModel):
    """The fields of OpenAI's `POST /v1/embeddings` body that we read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1, max_length=256)
    input: tuple[str, ...]
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS, strict=True)
    encoding_format: EncodingFormat = "float"

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: object) -> object:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list):
            raise ValueError("must be a string or an array of strings")
        if not texts:
            raise ValueError("must contain at least one string")
        if len(texts) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} strings per request, not {len(texts)}")
        for index, text in enumerate(texts):
            if isinstance(text, int | list):
                raise ValueError("token arrays are not supported by this API: send the text itself")
            if not isinstance(text, str):
                raise ValueError(f"input[{index}] must be a string")
            if not text:
                raise ValueError(f"input[{index}] must not be empty")
        return tuple(texts)


def parse_embeddings_request(body: str | None) -> EmbeddingsRequest:
    """The request, or InvalidRequest naming the offending field as OpenAI's `param`."""
    if not body:
        raise InvalidRequest("request body is required")
    try:
        return EmbeddingsRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return InvalidRequest("request body is not valid JSON")
    if not first["loc"]:
        return InvalidRequest("request body must be a JSON object")
    param = str(first["loc"][0])
    message = "field required" if first["type"] == "missing" else str(first["msg"]).removeprefix("Value error, ")
    return InvalidRequest(f"{param}: {message}", param=param)


@dataclass(frozen=True)
class EmbeddingRequest:
    """What an embedding provider is asked: its own model id, the texts, and the output size (None: the
    model's own default, for a model whose sizes we do not know)."""

    model: str  # the public name the caller used
    provider_model_id: str
    texts: tuple[str, ...]
    dimensions: int | None = None


@dataclass(frozen=True)
class EmbeddingReply:
    """One vector per text, in the texts' order, and the input tokens the provider counted."""

    vectors: list[list[float]]
    prompt_tokens: int
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Embeddings:
    """Served embeddings, as the JSON text of OpenAI's response (rendered once: its size is checked)."""

    model: str
    prompt_tokens: int
    text: str
    # OpenAI's x-ratelimit-* headers after this request (core.ai.rate_limits).
    headers: dict[str, str] = field(default_factory=dict)


def embeddings_text(model: str, reply: EmbeddingReply, encoding_format: EncodingFormat) -> str:
    """OpenAI's response body, compact. Vectors are float32, as OpenAI's are: base64 is their little-endian
    bytes (what the SDK decodes by default), float writes each value with the 9 digits that round-trip it."""
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode_vector(vector, encoding_format)}
            for index, vector in enumerate(reply.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens},
    }
    return json.dumps(body, separators=(",", ":"))


def encode_vector(vector: Sequence[float], encoding_format: EncodingFormat) -> str | list[float]:
    packed = struct.pack(f"<{len(vector)}f", *vector)
    if encoding_format == "base64":
        return base64.b64encode(packed).decode("ascii")
    return [float(f"{value:.9g}") for value in struct.unpack(f"<{len(vector)}f", packed)]


def certainly_too_large(inputs: int, dimensions: int, encoding_format: EncodingFormat) -> bool:
    """Whether the answer is sure to exceed MAX_RESPONSE_BYTES, known before the model is called."""
    per_value = 4 * 4 / 3 if encoding_format == "base64" else MIN_FLOAT_VALUE_BYTES
    return math.ceil(inputs * dimensions * per_value) > MAX_RESPONSE_BYTES


def response_too_large(dimensions: int | None, encoding_format: EncodingFormat) -> InvalidRequest:
    advice = "fewer inputs per request" + (", fewer dimensions" if dimensions else "")
    if encoding_format == "float":
        advice += ", or encoding_format base64 (3 times smaller)"
    return InvalidRequest(
        f"the embeddings would not fit in one response ({MAX_RESPONSE_BYTES // 1_000_000} MB): send {advice}",
        param="input",
    )


def estimate_input_tokens(texts: Sequence[str]) -> int:
    """Reservation estimate for real models, by the chat prompts' rule: one token per 3 bytes of UTF-8."""
    return sum(math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE) for text in texts)


def reply_vectors(answer: Any, count: int) -> list[list[float]]:
    """`count` vectors of floats from a provider's answer, or ValueError/TypeError (the adapter's 502)."""
    vectors = [[float(value) for value in vector] for vector in answer]
    if len(vectors) != count or len({len(vector) for vector in vectors}) > 1:
        raise ValueError(f"expected {count} vectors of one size")
    return vectors
