"""Tools and embeddings with the official OpenAI SDK against the offline stack, unchanged (only base_url and
api_key): a forced tool call round trip (call -> tool message -> text answer), buffered and streamed, and
`client.embeddings.create` with the SDK's default base64 encoding and with floats, metered in the budget."""

import json
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

PARAMS = (
    "FreeModels=nova-micro,titan-embed-text-v2 FreeRateLimit=100 FreeBurstLimit=100 FreeQuotaLimit=1000 "
    "FreeTokenBudget=5000 FreeDefaultMaxTokens=64"
)
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
FORCED: Any = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def capability_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("capabilities") / "state", PARAMS)
    yield stack
    stack.stop()


def client_for(stack: RunningStack) -> tuple[OpenAI, str]:
    answer = http(
        "POST", stack.url("/signup"), body={"name": "Agent", "email": f"agent-{uuid.uuid4().hex[:8]}@example.com"}
    )
    assert answer.status == HTTPStatus.CREATED, answer
    key = str(answer.body["api_key"])
    return OpenAI(base_url=stack.url("/v1"), api_key=key, timeout=30, max_retries=0), key


def tokens_used(stack: RunningStack, api_key: str) -> int:
    answer = http("GET", stack.url("/v1/usage"), headers={"Authorization": f"Bearer {api_key}"})
    assert answer.body["tokens"]["reserved"] == 0
    return int(answer.body["tokens"]["used"])


def test_a_forced_tool_call_round_trip(capability_stack: RunningStack) -> None:
    # Given a conversation that forces the weather function
    client, _ = client_for(capability_stack)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]

    # When the model is asked, and the function's result is sent back
    first = client.chat.completions.create(
        model="nova-micro", messages=messages, tools=[WEATHER_TOOL], tool_choice=FORCED
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21 degrees"},
    ]
    second = client.chat.completions.create(model="nova-micro", messages=messages, tools=[WEATHER_TOOL])

    # Then the call names the function with arguments its schema requires, and the answer is text
    assert call.type == "function" and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("celsius", "fahrenheit")
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "sunny and 21 degrees"


def test_a_forced_tool_call_streams_in_openais_deltas(capability_stack: RunningStack) -> None:
    # Given the same forced call, streamed
    client, _ = client_for(capability_stack)
    buffered = client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        tool_choice=FORCED,
    )

    # When the SDK reads the stream and joins the tool-call deltas as OpenAI documents
    chunks = list(
        client.chat.completions.create(
            model="nova-micro",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER_TOOL],
            tool_choice=FORCED,
            stream=True,
        )
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name if delta.function else None) or ""
            call["arguments"] += (delta.function.arguments if delta.function else None) or ""

    # Then it is the same call as the buffered answer's, in several pieces, ending in finish_reason tool_calls
    assert buffered.choices[0].message.tool_calls is not None
    expected = buffered.choices[0].message.tool_calls[0]
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(expected.function.arguments)
    assert calls[0]["id"]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_embeddings_with_the_sdk_are_deterministic_and_metered(
    capability_stack: RunningStack, encoding_format: Any
) -> None:
    # Given a partner whose tier includes the embedding model
    client, key = client_for(capability_stack)
    before = tokens_used(capability_stack, key)

    # When it embeds three texts, two of them equal (base64 is the SDK's default when none is given)
    texts = ["the same words", "other words here", "the same words"]
    fields: dict[str, Any] = {} if encoding_format == "base64" else {"encoding_format": "float"}
    answer = client.embeddings.create(model="titan-embed-text-v2", input=texts, **fields)

    # Then there is one vector per text, all of one size, equal texts give equal vectors
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert len({len(vector) for vector in vectors}) == 1 and len(vectors[0]) > 0
    assert vectors[0] == vectors[2] != vectors[1]
    assert answer.model == "titan-embed-text-v2"
    # And the tokens were counted against the budget
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 9
    assert tokens_used(capability_stack, key) - before == 9
