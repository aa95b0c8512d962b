"""OpenAI's chat request as we read it, the provider-neutral request, the offline provider's documented rule,
and the catalog and tier policies the template configures."""

import json
from typing import Any

import pytest

from core.ai.chat import (
    ChatTurn,
    ModelRequest,
    StreamEnd,
    TextDelta,
    estimate_prompt_tokens,
    model_request,
    parse_chat_request,
)
from core.ai.offline_model import OfflineModel
from core.errors import InvalidRequest
from core.tier_policy import DEFAULT_MAX_OUTPUT_TOKENS, CatalogModel, ModelCatalog, TierPolicy

MODEL = CatalogModel(name="m", provider_model_id="provider-id", max_output_tokens=1000)


def parsed(body: dict[str, Any], model: CatalogModel = MODEL, default_max_tokens: int = 64) -> ModelRequest:
    return model_request(parse_chat_request(json.dumps(body)), model, default_max_tokens=default_max_tokens)


def test_a_full_request_maps_to_the_provider_neutral_request() -> None:
    # Given an OpenAI request with system and developer messages, text parts, and sampling parameters
    request = parsed(
        {
            "model": "nova-micro",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
                {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Tell me more."},
            ],
            "max_completion_tokens": 100,
            "max_tokens": 7,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "user": "end-user-42",
            "seed": 7,
        }
    )

    # Then system text goes apart, turns keep their order, and max_completion_tokens wins over max_tokens
    assert request == ModelRequest(
        model="nova-micro",
        provider_model_id="provider-id",
        system=("Be brief.", "Use English."),
        turns=(ChatTurn("user", "Hello there"), ChatTurn("assistant", "Hi."), ChatTurn("user", "Tell me more.")),
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
    )


def test_without_max_tokens_the_tier_default_is_used() -> None:
    request = parsed({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b"]})

    assert (request.max_tokens, request.stop) == (64, ("a", "b"))


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
            "stream_options",
            "stream: true",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n", "n = 1"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs", ""),
        (
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"50256": -100}},
            "logit_bias",
            "",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "presence_penalty": 0.5},
            "presence_penalty",
            "",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]},
            "functions",
            "",
        ),
        ({"model": "m", "messages": []}, "messages", "at least 1"),
        ({"model": "m"}, "messages", "field required"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "field required"),
        ({"model": "m", "messages": [{"role": "function", "content": "x"}]}, "messages[0].role", ""),
        ({"model": "m", "messages": [{"role": "assistant", "content": None}]}, "messages[0]", "content is required"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens", ""),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature", ""),
        ({"model": "m", "messages": [{"role": "system", "content": "only system"}]}, "messages", "user message"),
    ],
)
def test_invalid_requests_name_the_parameter(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parsed(body)

    assert refused.value.param == param
    assert message in refused.value.message


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 1001}, "max_tokens"),
        ({"max_tokens": 10**40}, "max_tokens"),  # more digits than a DynamoDB number holds
        ({"max_completion_tokens": 1001}, "max_completion_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 1001}, "max_completion_tokens"),
    ],
)
def test_max_tokens_above_the_models_output_limit_is_refused(fields: dict[str, Any], param: str) -> None:
    # Given a model that writes at most 1000 tokens, When a request asks for more, Then 400 names the parameter
    with pytest.raises(InvalidRequest) as refused:
        parsed({"model": "m", "messages": HI, **fields})

    assert refused.value.param == param
    assert "at most 1000" in refused.value.message


def test_max_tokens_up_to_the_models_limit_is_sent_and_a_larger_tier_default_is_capped() -> None:
    assert parsed({"model": "m", "messages": HI, "max_tokens": 1000}).max_tokens == 1000
    assert parsed({"model": "m", "messages": HI}, default_max_tokens=4000).max_tokens == 1000


def test_the_catalog_knows_each_models_output_limit() -> None:
    # Given a catalog with an explicit limit, the default Nova models, and a model it knows nothing about
    catalog = ModelCatalog.parse("mine=org/model-x|700, nova-lite=us.amazon.nova-lite-v1:0, local")

    # Then each has its limit: the one written, Nova's documented one, or the generic default
    assert catalog.get("mine") == CatalogModel("mine", "org/model-x", 700)
    assert catalog.get("nova-lite").max_output_tokens == 5000  # type: ignore[union-attr]
    assert catalog.get("local").max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS  # type: ignore[union-attr]
    for broken in ("a|0", "a|many", "a=b|-1"):
        with pytest.raises(ValueError, match="max output tokens"):
            ModelCatalog.parse(broken)


@pytest.mark.parametrize(("body", "message"), [(None, "required"), ("{not json", "not valid JSON"), ("[1]", "object")])
def test_a_body_that_is_not_a_json_object_is_refused(body: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_chat_request(body)


def request_for(
    *turns: tuple[str, str], system: tuple[str, ...] = (), max_tokens: int = 100, stop: tuple[str, ...] = ()
) -> ModelRequest:
    return ModelRequest(
        model="m",
        provider_model_id="m",
        system=system,
        turns=tuple(ChatTurn(role, text) for role, text in turns),  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stop=stop,
    )


def test_the_offline_provider_follows_its_documented_rule() -> None:
    # Given a conversation: 3 + 2 + 1 + 4 words
    request = request_for(
        ("user", "one two  three"), ("assistant", "four five"), ("user", "the   last user message"), system=("sys",)
    )

    # When the offline provider answers
    reply = OfflineModel().complete(request, timeout_seconds=1)

    # Then prompt tokens are every message's words, the reply is the last user message, and its words count
    assert (reply.prompt_tokens, reply.text, reply.completion_tokens, reply.finish_reason) == (
        10,
        "the last user message",
        4,
        "stop",
    )
    # And its estimate is exact, so a reservation never undercounts it
    assert OfflineModel().estimate_prompt_tokens(request) == reply.prompt_tokens


def test_the_offline_provider_stops_at_max_tokens_and_at_stop_sequences() -> None:
    cut = OfflineModel().complete(request_for(("user", "a b c d e"), max_tokens=3), timeout_seconds=1)
    stopped = OfflineModel().complete(request_for(("user", "a b STOP c d"), stop=("STOP",)), timeout_seconds=1)

    assert (cut.text, cut.completion_tokens, cut.finish_reason) == ("a b c", 3, "length")
    assert (stopped.text, stopped.completion_tokens, stopped.finish_reason) == ("a b", 2, "stop")


def test_the_offline_provider_streams_the_same_reply_word_by_word_then_its_usage() -> None:
    request = request_for(("user", "a b  c d e"), max_tokens=4)
    reply = OfflineModel().complete(request, timeout_seconds=1)

    events = list(OfflineModel().stream(request, timeout_seconds=1))

    deltas, end = events[:-1], events[-1]
    assert [delta.text for delta in deltas if isinstance(delta, TextDelta)] == ["a", " b", " c", " d"]
    assert "".join(delta.text for delta in deltas if isinstance(delta, TextDelta)) == reply.text
    assert end == StreamEnd("length", reply.prompt_tokens, reply.completion_tokens)
    assert OfflineModel().estimate_completion_tokens(" b c") == 2


def test_the_real_model_estimate_is_bytes_over_three_plus_eight_per_message() -> None:
    # 9 + 3 bytes -> 3 + 1 tokens, plus 8 for each of the 2 messages
    assert estimate_prompt_tokens(request_for(("user", "123456789"), system=("abc",))) == 4 + 16
    # Multi-byte text counts by its UTF-8 size: "é" is 2 bytes
    assert estimate_prompt_tokens(request_for(("user", "ééé"))) == 2 + 8


def test_the_catalog_maps_public_names_to_provider_ids_in_template_order() -> None:
    catalog = ModelCatalog.parse("nova-micro=amazon.nova-micro-v1:0, local ,arn=arn:aws:bedrock:us-east-1:1:x/y")

    assert catalog.names() == ["nova-micro", "local", "arn"]
    assert catalog.get("nova-micro").provider_model_id == "amazon.nova-micro-v1:0"  # type: ignore[union-attr]
    assert catalog.get("local").provider_model_id == "local"  # type: ignore[union-attr]
    assert catalog.get("gpt-4") is None
    with pytest.raises(ValueError, match="twice"):
        ModelCatalog.parse("a,a=b")


def test_a_tier_allows_its_models_or_all_with_a_star() -> None:
    catalog = ModelCatalog.parse("a,b,c")
    limits = {"rate_limit": 1, "burst_limit": 1, "quota_limit": 1, "quota_period": "DAY", "default_max_tokens": 1}
    some = TierPolicy.model_validate({"models": "c,a", "token_budget": 0, **limits})
    every = TierPolicy.model_validate({"models": "*", "token_budget": 5, **limits})

    assert [model.name for model in some.allowed_models(catalog)] == ["a", "c"]
    assert not some.allows("b")
    assert [model.name for model in every.allowed_models(catalog)] == ["a", "b", "c"]
    assert some.unlimited_tokens and not every.unlimited_tokens
