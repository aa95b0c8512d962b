"""The Bedrock embeddings adapter against botocore's bedrock-runtime model: Stubber pins each model's InvokeModel
body (Titan Text Embeddings V2: one text per call; Cohere Embed v3: batches of 96), the answers are the models'
documented bodies, and errors come as Bedrock sends them."""

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from core.ai.adapters.bedrock_embeddings import COHERE_TEXTS_PER_CALL, BedrockEmbeddings
from core.ai.embeddings import EmbeddingRequest
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


class JsonBody:
    """Matches an InvokeModel `body` by its JSON value, not by its spelling."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str | bytes) and json.loads(other) == self.value

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"JsonBody({self.value!r})"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )


@pytest.fixture
def stubbed(client: Any) -> Iterator[tuple[BedrockEmbeddings, Stubber]]:
    # One call at a time, so the stubbed answers are consumed in the texts' order
    with Stubber(client) as stubber:
        yield BedrockEmbeddings(client, concurrent_calls=1), stubber
        stubber.assert_no_pending_responses()


def answer(body: dict[str, Any], input_tokens: int | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode()
    response: dict[str, Any] = {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": "application/json"}
    if input_tokens is not None:
        response["ResponseMetadata"] = {"HTTPHeaders": {"x-amzn-bedrock-input-token-count": str(input_tokens)}}
    return response


def invoked(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelId": model_id,
        "body": JsonBody(body),
        "contentType": "application/json",
        "accept": "application/json",
    }


def titan_answer(vector: list[float], tokens: int) -> dict[str, Any]:
    # Titan V2's documented answer: embedding, inputTextTokenCount, embeddingsByType
    return answer({"embedding": vector, "inputTextTokenCount": tokens, "embeddingsByType": {"float": vector}})


def request(model_id: str, texts: list[str], dimensions: int | None = None) -> EmbeddingRequest:
    return EmbeddingRequest(model="m-embed", provider_model_id=model_id, texts=tuple(texts), dimensions=dimensions)


def test_titan_gets_one_text_per_call_with_the_dimensions_and_normalized_vectors(
    stubbed: tuple[BedrockEmbeddings, Stubber],
) -> None:
    provider, stubber = stubbed
    # Given Titan answers each text with its vector and token count
    stubber.add_response(
        "invoke_model",
        titan_answer([0.5, 0.5], 3),
        invoked(TITAN, {"inputText": "first", "dimensions": 256, "normalize": True}),
    )
    stubber.add_response(
        "invoke_model",
        titan_answer([0.0, 1.0], 4),
        invoked(TITAN, {"inputText": "second", "dimensions": 256, "normalize": True}),
    )

    # When two texts are embedded
    reply = provider.embed(request(TITAN, ["first", "second"], dimensions=256), timeout_seconds=5)

    # Then the vectors come in the texts' order and the tokens are Titan's counts
    assert reply.vectors == [[0.5, 0.5], [0.0, 1.0]]
    assert reply.prompt_tokens == 7


def test_titan_through_a_cross_region_id_is_still_titan(stubbed: tuple[BedrockEmbeddings, Stubber]) -> None:
    provider, stubber = stubbed
    model_id = f"us.{TITAN}"
    stubber.add_response(
        "invoke_model",
        titan_answer([1.0], 2),
        invoked(model_id, {"inputText": "x", "dimensions": 1024, "normalize": True}),
    )

    assert provider.embed(request(model_id, ["x"], dimensions=1024), timeout_seconds=5).vectors == [[1.0]]


def test_titan_v1_gets_the_text_alone(stubbed: tuple[BedrockEmbeddings, Stubber]) -> None:
    provider, stubber = stubbed
    v1_answer = answer({"embedding": [1.0, 0.0], "inputTextTokenCount": 2})
    stubber.add_response("invoke_model", v1_answer, invoked("amazon.titan-embed-text-v1", {"inputText": "x"}))

    assert provider.embed(request("amazon.titan-embed-text-v1", ["x"]), timeout_seconds=5).prompt_tokens == 2


def test_cohere_gets_batches_of_96_texts_and_charges_the_token_count_header(
    stubbed: tuple[BedrockEmbeddings, Stubber],
) -> None:
    provider, stubber = stubbed
    # Given 100 texts: one call with 96, one with 4
    texts = [f"text {index}" for index in range(COHERE_TEXTS_PER_CALL + 4)]
    for start, size, tokens in ((0, COHERE_TEXTS_PER_CALL, 300), (COHERE_TEXTS_PER_CALL, 4, 12)):
        batch = texts[start : start + size]
        # Cohere's documented answer: embeddings, id, response_type, texts
        body = {
            "embeddings": [[float(start + index), 1.0] for index in range(size)],
            "id": "a1b2",
            "response_type": "embeddings_floats",
            "texts": batch,
        }
        stubber.add_response(
            "invoke_model",
            answer(body, input_tokens=tokens),
            invoked(COHERE, {"texts": batch, "input_type": "search_document"}),
        )

    # When they are embedded
    reply = provider.embed(request(COHERE, texts, dimensions=1024), timeout_seconds=5)

    # Then every text has its vector, in order, and the tokens are Bedrock's counts
    assert [vector[0] for vector in reply.vectors] == [float(index) for index in range(len(texts))]
    assert reply.prompt_tokens == 312


def test_cohere_without_a_token_count_is_charged_the_estimate(stubbed: tuple[BedrockEmbeddings, Stubber]) -> None:
    provider, stubber = stubbed
    body = {"embeddings": [[1.0]], "id": "a1b2", "response_type": "embeddings_floats", "texts": ["abcdef"]}
    stubber.add_response(
        "invoke_model", answer(body), invoked(COHERE, {"texts": ["abcdef"], "input_type": "search_document"})
    )

    # one token per 3 bytes
    assert provider.embed(request(COHERE, ["abcdef"]), timeout_seconds=5).prompt_tokens == 2


@pytest.mark.parametrize(
    ("code", "message", "raised"),
    [
        ("ThrottlingException", "Too many requests, please wait before trying again.", UpstreamThrottled),
        ("ValidationException", "Malformed input request: expected maxLength: 2048", UpstreamRejected),
        ("ModelTimeoutException", "Model has timed out", UpstreamTimedOut),
        ("AccessDeniedException", "You don't have access to the model with the specified model ID.", UpstreamFailed),
        ("ServiceUnavailableException", "Service unavailable", UpstreamFailed),
    ],
)
def test_bedrock_errors_map_as_for_chat(
    stubbed: tuple[BedrockEmbeddings, Stubber], code: str, message: str, raised: type[Exception]
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error("invoke_model", service_error_code=code, service_message=message, http_status_code=400)

    with pytest.raises(raised):
        provider.embed(request(TITAN, ["x"], dimensions=1024), timeout_seconds=5)


def test_an_answer_that_is_not_embeddings_is_a_502(stubbed: tuple[BedrockEmbeddings, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response("invoke_model", answer({"unexpected": True}))

    with pytest.raises(UpstreamFailed):
        provider.embed(request(TITAN, ["x"]), timeout_seconds=5)


def test_a_model_with_no_known_body_is_the_operators_to_fix(client: Any) -> None:
    with pytest.raises(UpstreamFailed, match="Models parameter"):
        BedrockEmbeddings(client).embed(request("amazon.nova-2-multimodal-embeddings-v1:0", ["x"]), timeout_seconds=5)
    with pytest.raises(UpstreamFailed, match="Models parameter"):
        BedrockEmbeddings(client).embed(request("cohere.embed-v4:0", ["x"]), timeout_seconds=5)


class SlowClient:
    """A bedrock-runtime stand-in whose calls take `delay` seconds each, or fail on a chosen text."""

    def __init__(self, delay: float = 0.0, throttle_text: str | None = None) -> None:
        self.delay = delay
        self.throttle_text = throttle_text
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def invoke_model(self, modelId: str, body: str, contentType: str, accept: str) -> dict[str, Any]:  # noqa: N803
        text = json.loads(body)["inputText"]
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if text == self.throttle_text:
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel")
            return titan_answer([float(text)], 1)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_titan_calls_run_a_few_at_a_time_and_keep_the_texts_order() -> None:
    client = SlowClient(delay=0.02)

    reply = BedrockEmbeddings(client, concurrent_calls=4).embed(  # type: ignore[arg-type]
        request(TITAN, [str(index) for index in range(20)]), timeout_seconds=5
    )

    assert [vector[0] for vector in reply.vectors] == [float(index) for index in range(20)]
    assert client.most_in_flight == 4


def test_one_throttled_call_throttles_the_request() -> None:
    client = SlowClient(throttle_text="7")

    with pytest.raises(UpstreamThrottled):
        BedrockEmbeddings(client, concurrent_calls=4).embed(  # type: ignore[arg-type]
            request(TITAN, [str(index) for index in range(20)]), timeout_seconds=5
        )


def test_calls_that_outlast_the_deadline_answer_504_without_waiting_for_them() -> None:
    client = SlowClient(delay=0.5)
    started = time.monotonic()

    with pytest.raises(UpstreamTimedOut):
        BedrockEmbeddings(client, concurrent_calls=2).embed(  # type: ignore[arg-type]
            request(TITAN, [str(index) for index in range(10)]), timeout_seconds=0.1
        )

    assert time.monotonic() - started < 0.4
