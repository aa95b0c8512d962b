"""POST /v1/embeddings in-process on the emulated stack provisioned from template.yaml (the offline provider,
small budgets through parameter overrides), with partners made by the signup function: OpenAI's shape,
tokens metered against the tier's budget with chat's reservation rule, hostile inputs, the models listing."""

import base64
import json
import struct
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from core.ai.embeddings import EmbeddingReply, EmbeddingRequest
from core.ai.embeddings_service import embeddings_api
from core.ai.offline_embeddings import OfflineEmbeddings
from core.errors import UpstreamFailed
from handlers import embeddings, models, usage
from offline.provision import ProvisionedStack
from offline.template import StackTemplate, load_template
from tests.integration.ai.test_ai_api import (
    Answer,
    ai_stack,  # noqa: F401 - the stack fixture, with this module's ai_template
    assert_openai_error,
    call,
    chat_handler,
    event,
    ledger,
    ledger_by_model,
    sign_up,
)

# free may call nova-micro and the embedding model, 200 tokens a day; pro may call it too (its default list).
PARAMETERS = {
    "SelfServiceTiers": "free,pro,enterprise",
    "FreeTokenBudget": "200",
    "FreeDefaultMaxTokens": "5",
    "FreeModels": "nova-micro,titan-embed-text-v2",
    "EnterpriseTokenBudget": "0",
}
MODEL = "titan-embed-text-v2"


@pytest.fixture(scope="module")
def ai_template() -> StackTemplate:
    return load_template(overrides=PARAMETERS)


@pytest.fixture
def embeddings_stack(
    ai_stack: ProvisionedStack,  # noqa: F811 - the imported fixture, requested by name
    ai_template: StackTemplate,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ProvisionedStack]:
    """The stack, with the embeddings function's environment as the template gives it."""
    variables = ai_template.resources["EmbeddingsFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in ai_stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    embeddings_api.cache_clear()
    yield ai_stack
    embeddings_api.cache_clear()


def embed(key_id: str | None, texts: Any, model: str = MODEL, **fields: Any) -> Answer:
    return call(embeddings.handler, event("embeddings.json", key_id, {"model": model, "input": texts, **fields}))


def test_embeddings_in_openais_shape_are_metered_in_tokens(embeddings_stack: ProvisionedStack) -> None:
    # Given a free partner
    partner = sign_up()

    # When it embeds two texts (3 words: the offline provider's tokens)
    answer = embed(partner.api_key_id, ["one two", "three"], encoding_format="float")

    # Then the answer has OpenAI's shape: one vector per input, in order, of the model's default size
    assert answer.status == HTTPStatus.OK
    assert set(answer.body) == {"object", "data", "model", "usage"}
    assert (answer.body["object"], answer.body["model"]) == ("list", MODEL)
    assert [(item["object"], item["index"], len(item["embedding"])) for item in answer.body["data"]] == [
        ("embedding", 0, 1024),
        ("embedding", 1, 1024),
    ]
    assert answer.body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert answer.headers["x-request-id"]
    # And the ledger counted the request and its tokens, with nothing left reserved
    assert ledger(embeddings_stack, partner) == {
        "requests": 1,
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "reserved_tokens": 0,
        "committed_tokens": 3,
    }
    # And the embedding model's own counters (all prompt tokens)
    assert ledger_by_model(embeddings_stack, partner) == {MODEL: {"prompt_tokens": 3, "completion_tokens": 0}}


def test_base64_and_float_carry_the_same_vectors_and_the_same_text_the_same_vector(
    embeddings_stack: ProvisionedStack,
) -> None:
    # Given a pro partner (its default models include the embedding model)
    partner = sign_up("pro", "pro@acme.example")

    # When it embeds the same texts as floats and as base64 (the SDK's default), at 256 dimensions
    texts = ["same text", "other text", "same text"]
    floats = embed(partner.api_key_id, texts, dimensions=256, encoding_format="float").body
    packed = embed(partner.api_key_id, texts, dimensions=256, encoding_format="base64").body

    # Then base64 is the float32 little-endian bytes of the float answer, and equal texts get equal vectors
    decoded = [list(struct.unpack("<256f", base64.b64decode(item["embedding"]))) for item in packed["data"]]
    as_float32 = [list(struct.unpack("<256f", struct.pack("<256f", *item["embedding"]))) for item in floats["data"]]
    assert decoded == as_float32
    assert decoded[0] == decoded[2] != decoded[1]


def test_an_embedding_model_and_a_chat_model_are_each_refused_on_the_others_route(
    embeddings_stack: ProvisionedStack,
) -> None:
    partner = sign_up()

    on_embeddings = embed(partner.api_key_id, "hello", model="nova-micro")
    on_chat = call(
        chat_handler,
        event(
            "chat_completions.json",
            partner.api_key_id,
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        ),
    )

    assert_openai_error(on_embeddings, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert on_embeddings.body["error"]["param"] == "model"
    assert "/v1/chat/completions" in on_embeddings.body["error"]["message"]
    assert_openai_error(on_chat, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert on_chat.body["error"]["param"] == "model"
    assert "/v1/embeddings" in on_chat.body["error"]["message"]
    # Both were counted, as API Gateway counts them, and charged nothing
    assert ledger(embeddings_stack, partner) == {"requests": 2}


def test_the_budget_runs_out_with_chats_429(embeddings_stack: ProvisionedStack) -> None:
    # Given a free partner (200 tokens a day) that has used 150 of them
    partner = sign_up()
    assert embed(partner.api_key_id, ["word " * 150]).status == HTTPStatus.OK

    # When it embeds inputs of 51 tokens
    refused = embed(partner.api_key_id, ["word " * 50, "one"])

    # Then it is refused with chat's answer (429 insufficient_quota, not to be retried), charging nothing
    assert_openai_error(refused, HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
    assert refused.headers["x-should-retry"] == "false"
    assert "51 tokens" in refused.body["error"]["message"]
    assert "50 remain" in refused.body["error"]["message"]
    assert "max_tokens" not in refused.body["error"]["message"]
    assert ledger(embeddings_stack, partner)["committed_tokens"] == 150
    # And inputs that fit exactly are still served; the refused request was counted
    assert embed(partner.api_key_id, ["word " * 50]).status == HTTPStatus.OK
    assert ledger(embeddings_stack, partner) == {
        "requests": 3,
        "prompt_tokens": 200,
        "completion_tokens": 0,
        "reserved_tokens": 0,
        "committed_tokens": 200,
    }


def test_a_failed_provider_call_releases_the_reservation(
    embeddings_stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the provider fails
    def broken(self: OfflineEmbeddings, request: EmbeddingRequest, timeout_seconds: float) -> EmbeddingReply:
        raise UpstreamFailed("the model is down")

    monkeypatch.setattr(OfflineEmbeddings, "embed", broken)
    partner = sign_up()

    # When the partner asks for embeddings
    answer = embed(partner.api_key_id, ["one two three"])

    # Then 502, and nothing charged or left reserved
    assert_openai_error(answer, HTTPStatus.BAD_GATEWAY, "server_error", "upstream_error")
    assert ledger(embeddings_stack, partner) == {"requests": 1, "reserved_tokens": 0, "committed_tokens": 0}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("{not json", None),
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": ["x"] * 2049}, "input"),
        ({"model": MODEL, "input": [1, 2, 3]}, "input"),
        ({"model": MODEL, "input": ["ok", ""]}, "input"),
        ({"model": MODEL, "input": "x", "dimensions": 100}, "dimensions"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL, "input": ["x " * 10] * 2048, "encoding_format": "float"}, "input"),  # no fit in 6 MB
    ],
)
def test_invalid_requests_are_400_in_openais_shape(
    embeddings_stack: ProvisionedStack, body: Any, param: str | None
) -> None:
    partner = sign_up()

    answer = call(embeddings.handler, event("embeddings.json", partner.api_key_id, body))

    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert answer.body["error"]["param"] == param
    assert ledger(embeddings_stack, partner) == {"requests": 1}


def test_a_body_that_is_not_utf8_is_400_and_control_characters_are_text(embeddings_stack: ProvisionedStack) -> None:
    partner = sign_up()
    sent = event("embeddings.json", partner.api_key_id)
    sent["body"], sent["isBase64Encoded"] = base64.b64encode(b'{"model": "\xff\xfe", "input": "x"}').decode(), True

    refused = call(embeddings.handler, sent)
    served = embed(partner.api_key_id, ["tab\tnull\u0000 bidi\u202e end"])

    assert_openai_error(refused, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert "UTF-8" in refused.body["error"]["message"]
    assert served.status == HTTPStatus.OK


def test_models_lists_the_embedding_model_for_the_tiers_that_include_it(embeddings_stack: ProvisionedStack) -> None:
    listed = {
        tier: [item["id"] for item in call(models.handler, event("get_models.json", partner.api_key_id)).body["data"]]
        for tier, partner in (
            ("free", sign_up("free", "free@acme.example")),
            ("pro", sign_up("pro", "pro@acme.example")),
            ("enterprise", sign_up("enterprise", "big@acme.example")),
        )
    }

    assert listed == {
        "free": ["nova-micro", MODEL],
        "pro": ["nova-micro", "nova-lite", MODEL],
        "enterprise": ["nova-micro", "nova-lite", "nova-pro", MODEL],
    }


def test_an_embedding_model_the_deployment_does_not_serve_is_404(embeddings_stack: ProvisionedStack) -> None:
    partner = sign_up()
    answer = call(
        embeddings.handler,
        event("embeddings.json", partner.api_key_id, {"model": "cohere-embed-english-v3", "input": "x"}),
    )

    assert_openai_error(answer, HTTPStatus.NOT_FOUND, "invalid_request_error", "model_not_found")


def test_usage_counts_embedding_tokens_as_prompt_tokens(embeddings_stack: ProvisionedStack) -> None:
    partner = sign_up()
    embed(partner.api_key_id, ["one two three", "four"])

    tokens = call(usage.handler, event("get_usage.json", partner.api_key_id)).body["tokens"]

    assert tokens == {"prompt": 4, "completion": 0, "used": 4, "reserved": 0, "budget": 200, "remaining": 196}


def test_each_request_emits_metrics_by_tier_and_model_only(
    embeddings_stack: ProvisionedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    partner = sign_up()
    capsys.readouterr()

    embed(partner.api_key_id, ["one two", "three"])

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [record] = [record for record in records if "EmbeddingRequests" in record]
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MeteredAI"
    assert sorted(directive["Dimensions"][0]) == ["model", "service", "tier"]
    assert {metric["Name"] for metric in directive["Metrics"]} == {
        "EmbeddingRequests",
        "PromptTokens",
        "UpstreamLatency",
    }
    assert (record["tier"], record["model"], record["PromptTokens"]) == ("free", MODEL, [3.0])
    assert partner.api_key_id not in json.dumps(record)


def test_an_answer_found_too_large_for_lambda_is_400_and_charges_nothing(embeddings_stack: ProvisionedStack) -> None:
    # Given an enterprise partner (no budget) and 500 inputs of 1024 floats: they might fit in 6 MB (10 bytes a
    # value), so the model is called, but the offline vectors' values take more
    partner = sign_up("enterprise", "big@acme.example")

    # When it asks for them as floats
    answer = embed(partner.api_key_id, ["x"] * 500, encoding_format="float")

    # Then 400 naming input, with the way out, and nothing charged or left reserved
    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert answer.body["error"]["param"] == "input"
    assert "base64" in answer.body["error"]["message"]
    assert ledger(embeddings_stack, partner, "MONTH") == {"requests": 1, "reserved_tokens": 0, "committed_tokens": 0}
    # And the same inputs in base64 are served
    assert embed(partner.api_key_id, ["x"] * 500, encoding_format="base64").status == HTTPStatus.OK


def test_embeddings_answers_carry_the_rate_limit_headers(embeddings_stack: ProvisionedStack) -> None:
    # Given a free partner (1000 requests and 200 tokens a day)
    partner = sign_up()

    # When it embeds 3 tokens, sends an invalid request, then asks for more tokens than remain
    served = embed(partner.api_key_id, ["one two", "three"])
    invalid = embed(partner.api_key_id, "hello", dimensions=7)
    refused = embed(partner.api_key_id, ["word " * 198])

    # Then each answer says the requests and tokens left after it, as GET /v1/usage would
    remaining = [
        (answer.headers["x-ratelimit-remaining-requests"], answer.headers["x-ratelimit-remaining-tokens"])
        for answer in (served, invalid, refused)
    ]
    assert remaining == [("999", "197"), ("998", "197"), ("997", "197")]
    assert refused.status == HTTPStatus.TOO_MANY_REQUESTS
    assert all(answer.headers["x-ratelimit-limit-tokens"] == "200" for answer in (served, invalid, refused))
