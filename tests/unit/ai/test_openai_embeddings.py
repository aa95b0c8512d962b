"""The OpenAI-compatible embeddings provider against a fake upstream keeping OpenAI's documented contract for
`POST /v1/embeddings`: the texts and dimensions pass through, the answer maps back in the inputs' order, and
the upstream's errors map as for chat completions."""

from collections.abc import Iterator
from typing import Any

import pytest

from core.ai.adapters.openai_embeddings import OpenAICompatibleEmbeddings
from core.ai.embeddings import EmbeddingRequest
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut
from tests.fake_openai_upstream import FakeUpstream, error_body, fake_upstream

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as running:
        yield running


def embeddings_answer(vectors: list[list[float]], prompt_tokens: int | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "object": "list",
        # OpenAI numbers each vector; an upstream may list them in any order
        "data": [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)][
            ::-1
        ],
        "model": "text-embedding-3-small",
    }
    if prompt_tokens is not None:
        answer["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return answer


def request(dimensions: int | None = 2) -> EmbeddingRequest:
    return EmbeddingRequest(
        model="small-embed", provider_model_id="text-embedding-3-small", texts=("one", "two"), dimensions=dimensions
    )


def test_the_request_passes_through_and_the_answer_maps_back_in_order(upstream: FakeUpstream) -> None:
    # Given an upstream answering two vectors, listed last first
    upstream.then_answer(200, embeddings_answer([[1.0, 0.0], [0.0, 1.0]], prompt_tokens=6))
    provider = OpenAICompatibleEmbeddings(upstream.base_url, api_key=lambda: UPSTREAM_KEY)

    # When two texts are embedded
    reply = provider.embed(request(), timeout_seconds=5)

    # Then it posted OpenAI's request with the upstream's model id, floats asked for, and our upstream key
    [received] = upstream.requests
    assert received.path == "/v1/embeddings"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.body == {
        "model": "text-embedding-3-small",
        "input": ["one", "two"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    # And the vectors are in the inputs' order, charged at the upstream's usage
    assert reply.vectors == [[1.0, 0.0], [0.0, 1.0]]
    assert reply.prompt_tokens == 6


def test_without_dimensions_the_upstream_uses_its_own_and_without_usage_the_estimate_is_charged(
    upstream: FakeUpstream,
) -> None:
    upstream.then_answer(200, embeddings_answer([[1.0], [2.0]]))

    reply = OpenAICompatibleEmbeddings(upstream.base_url).embed(request(dimensions=None), timeout_seconds=5)

    assert "dimensions" not in upstream.requests[0].body
    assert "authorization" not in upstream.requests[0].headers
    assert reply.prompt_tokens == 2  # "one", "two": one token per 3 bytes each


@pytest.mark.parametrize(
    ("status", "body", "delay", "raised"),
    [
        (400, error_body("dimensions is not supported by this model", code="invalid_value"), 0.0, UpstreamRejected),
        (429, error_body("Rate limit reached", "requests"), 0.0, UpstreamThrottled),
        (500, error_body("The server had an error", "server_error"), 0.0, UpstreamFailed),
        (200, {"object": "list", "data": [{"index": 0, "embedding": [1.0]}]}, 0.0, UpstreamFailed),  # 1 vector for 2
        (200, b"not json", 0.0, UpstreamFailed),
        (200, embeddings_answer([[1.0], [2.0]]), 2.0, UpstreamTimedOut),
    ],
)
def test_upstream_failures_map_as_for_chat(
    upstream: FakeUpstream, status: int, body: Any, delay: float, raised: type[Exception]
) -> None:
    upstream.then_answer(status, body, delay=delay)

    with pytest.raises(raised):
        OpenAICompatibleEmbeddings(upstream.base_url).embed(request(), timeout_seconds=0.3)


def test_an_unreachable_upstream_is_a_502() -> None:
    with pytest.raises(UpstreamFailed):
        OpenAICompatibleEmbeddings("http://127.0.0.1:9/v1").embed(request(), timeout_seconds=1)
