"""POST /v1/embeddings' request and response: hostile inputs get a 400 naming the parameter, base64 is exactly
what the official SDK decodes, and the offline provider's vectors are deterministic unit vectors."""

import json
import math
import struct
from typing import Any

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import CreateEmbeddingResponse

from core.ai.embeddings import (
    MAX_INPUTS,
    EmbeddingReply,
    EmbeddingsRequest,
    embeddings_text,
    parse_embeddings_request,
)
from core.ai.embeddings_service import embedding_request
from core.ai.offline_embeddings import DEFAULT_DIMENSIONS, OfflineEmbeddings, offline_vector
from core.errors import InvalidRequest
from core.tier_policy import ModelCatalog

CATALOG = ModelCatalog.parse(
    "titan-embed-text-v2=amazon.titan-embed-text-v2:0,cohere-embed-english-v3=cohere.embed-english-v3,"
    "my-embed=text-embedding-3-small"
)


def body(**fields: Any) -> str:
    return json.dumps({"model": "titan-embed-text-v2", "input": "hello", **fields})


@pytest.mark.parametrize(
    ("sent", "param", "says"),
    [
        (None, None, "request body is required"),
        ("{not json", None, "not valid JSON"),
        ("[1, 2]", None, "JSON object"),
        (json.dumps({"input": "hi"}), "model", "field required"),
        (body(model=""), "model", "at least 1 character"),
        (body(input=None), "input", "string or an array of strings"),
        (body(input=[]), "input", "at least one string"),
        (body(input=""), "input", "input[0] must not be empty"),
        (body(input=["ok", ""]), "input", "input[1] must not be empty"),
        (body(input=["ok", 7.5]), "input", "input[1] must be a string"),
        (body(input=["ok", {"text": "x"}]), "input", "input[1] must be a string"),
        (body(input=[1, 2, 3]), "input", "token arrays are not supported"),
        (body(input=[[1, 2], [3]]), "input", "token arrays are not supported"),
        (body(input=["x"] * (MAX_INPUTS + 1)), "input", "at most 2048 strings"),
        (body(dimensions=0), "dimensions", "greater than or equal to 1"),
        (body(dimensions=10**40), "dimensions", "less than or equal to 8192"),
        (body(dimensions="256"), "dimensions", "valid integer"),
        (body(dimensions=256.0), "dimensions", "valid integer"),
        (body(encoding_format="int8"), "encoding_format", "'float' or 'base64'"),
    ],
)
def test_hostile_requests_are_refused_naming_the_parameter(sent: str | None, param: str | None, says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_embeddings_request(sent)

    assert refused.value.param == param
    assert says in refused.value.message


def test_a_valid_request_takes_a_string_or_up_to_2048_and_ignores_user_and_unknown_fields() -> None:
    # Control characters and any Unicode are text like any other
    texts = ["x"] * (MAX_INPUTS - 1) + ["tab\there\x00\u202e"]
    request = parse_embeddings_request(body(input=texts, user="u-1", future_field={"a": 1}, dimensions=256))

    assert request.input == tuple(texts)
    assert (request.dimensions, request.encoding_format) == (256, "float")
    assert parse_embeddings_request(body()).input == ("hello",)


def request_for(model: str, **fields: Any) -> EmbeddingsRequest:
    return EmbeddingsRequest.model_validate({"model": model, "input": ["a text"], **fields})


@pytest.mark.parametrize(
    ("model", "dimensions", "expected"),
    [
        ("titan-embed-text-v2", None, 1024),
        ("titan-embed-text-v2", 256, 256),
        ("cohere-embed-english-v3", None, 1024),
        ("my-embed", None, None),  # an upstream's model: its own default
        ("my-embed", 77, 77),  # and its own rules
    ],
)
def test_dimensions_default_to_the_models_own(model: str, dimensions: int | None, expected: int | None) -> None:
    catalog_model = CATALOG.get(model)
    assert catalog_model is not None

    assert embedding_request(request_for(model, dimensions=dimensions), catalog_model).dimensions == expected


@pytest.mark.parametrize(("model", "dimensions"), [("titan-embed-text-v2", 768), ("cohere-embed-english-v3", 512)])
def test_dimensions_a_known_model_does_not_answer_are_400(model: str, dimensions: int) -> None:
    catalog_model = CATALOG.get(model)
    assert catalog_model is not None

    with pytest.raises(InvalidRequest) as refused:
        embedding_request(request_for(model, dimensions=dimensions), catalog_model)

    assert refused.value.param == "dimensions"


def test_a_text_longer_than_the_model_takes_is_400_naming_it() -> None:
    cohere = CATALOG.get("cohere-embed-english-v3")
    assert cohere is not None

    with pytest.raises(InvalidRequest) as refused:
        embedding_request(
            EmbeddingsRequest.model_validate({"model": cohere.name, "input": ["short", "x" * 2049]}), cohere
        )

    assert refused.value.param == "input"
    assert "input[1]" in refused.value.message


@pytest.mark.parametrize(("encoding_format", "inputs"), [("float", 600), ("base64", 1200)])
def test_an_answer_that_cannot_fit_in_lambdas_response_is_400_before_the_model_is_called(
    encoding_format: str, inputs: int
) -> None:
    titan = CATALOG.get("titan-embed-text-v2")
    assert titan is not None
    request = EmbeddingsRequest.model_validate(
        {"model": titan.name, "input": ["x"] * inputs, "encoding_format": encoding_format}
    )

    with pytest.raises(InvalidRequest) as refused:
        embedding_request(request, titan)

    assert refused.value.param == "input"
    assert "fewer inputs" in refused.value.message


def test_base64_is_little_endian_float32_exactly_as_the_openai_sdk_decodes_it() -> None:
    # Given vectors with values float32 cannot hold exactly
    vectors = [[0.1, -0.2, 1 / 3], [1e-8, -1.0, 0.5]]
    reply = EmbeddingReply(vectors=vectors, prompt_tokens=4)

    # When they are sent as base64 and the SDK decodes them as it does by default (no encoding_format given)
    sent = json.loads(embeddings_text("titan-embed-text-v2", reply, "base64"))
    # (the SDK builds its response objects without validation, as construct_type does)
    response = construct_type(type_=CreateEmbeddingResponse, value=sent)
    decoded = parse_embedding_response(response, encoding_format=omit)  # type: ignore[arg-type]

    # Then the SDK gets each value as float32, and the float format gives the same float32 values
    as_float32 = [list(struct.unpack("<3f", struct.pack("<3f", *vector))) for vector in vectors]
    assert [item.embedding for item in decoded.data] == as_float32
    floats = json.loads(embeddings_text("titan-embed-text-v2", reply, "float"))
    assert [list(struct.unpack("<3f", struct.pack("<3f", *item["embedding"]))) for item in floats["data"]] == as_float32
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": floats["data"][0]["embedding"]},
            {"object": "embedding", "index": 1, "embedding": floats["data"][1]["embedding"]},
        ],
        "model": "titan-embed-text-v2",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def test_the_offline_provider_answers_the_same_unit_vector_for_the_same_text() -> None:
    provider = OfflineEmbeddings()
    request = embedding_request(
        EmbeddingsRequest.model_validate({"model": "my-embed", "input": ["one two", "three", "one two"]}),
        CATALOG.get("my-embed"),  # type: ignore[arg-type]
    )

    reply = provider.embed(request, timeout_seconds=1)

    first, other, again = reply.vectors
    assert first == again != other
    assert all(len(vector) == DEFAULT_DIMENSIONS for vector in reply.vectors)
    assert all(math.isclose(math.fsum(value * value for value in vector), 1.0) for vector in reply.vectors)
    # Tokens are words, as the offline chat provider counts them; the estimate is exact
    assert reply.prompt_tokens == provider.estimate_input_tokens(request.texts) == 5


def test_an_offline_vector_of_fewer_dimensions_is_the_normalized_start_of_a_longer_one() -> None:
    short, long = offline_vector("text", 256), offline_vector("text", 1024)

    scale = math.sqrt(math.fsum(value * value for value in long[:256]))
    assert all(math.isclose(a, b / scale) for a, b in zip(short, long[:256], strict=True))
