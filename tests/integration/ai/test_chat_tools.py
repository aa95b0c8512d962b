"""Tools, JSON output and images through the chat function in-process (offline provider, emulated stack):
a forced call and the tool message after it in OpenAI's shape, metered like any completion, and the 400s
that name the parameter."""

# The emulated stack's fixtures are test_ai_api's, imported: pytest finds them by name, ruff sees a shadowing.
# ruff: noqa: F811

import base64
import json
from http import HTTPStatus
from typing import Any

import pytest

from offline.provision import ProvisionedStack
from tests.integration.ai.test_ai_api import (  # noqa: F401 - the module's fixtures, used here by name
    ai_stack,
    ai_template,
    assert_openai_error,
    call,
    chat_handler,
    event,
    ledger,
    sign_up,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def chat_body(key_id: str, **body: Any) -> Any:
    return call(chat_handler, event("chat_completions.json", key_id, {"model": "nova-micro", **body}))


def test_a_forced_tool_call_round_trip_in_openais_shape(ai_stack: ProvisionedStack) -> None:
    # Given a free partner asking about the weather with get_weather forced
    partner = sign_up()
    question = {"role": "user", "content": "weather in Oslo"}

    # When it sends the request, then the call's result as a tool message
    called = chat_body(partner.api_key_id, messages=[question], tools=[WEATHER], tool_choice="required", max_tokens=10)
    message = called.body["choices"][0]["message"]
    answered = chat_body(
        partner.api_key_id,
        messages=[
            question,
            message,
            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "12 C"},
        ],
        tools=[WEATHER],
        max_tokens=10,
    )

    # Then the first answer is a call with arguments holding the required property, content null
    assert called.status == HTTPStatus.OK, called.body
    assert called.body["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    [tool_call] = message["tool_calls"]
    assert (tool_call["type"], tool_call["function"]["name"]) == ("function", "get_weather")
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "string"}
    # And the second is text, so the round trip ends
    assert answered.status == HTTPStatus.OK, answered.body
    assert answered.body["choices"][0]["message"] == {"role": "assistant", "content": "12 C", "refusal": None}
    assert answered.body["choices"][0]["finish_reason"] == "stop"
    # And both were metered like any completion, nothing left reserved
    used = called.body["usage"]["total_tokens"] + answered.body["usage"]["total_tokens"]
    assert ledger(ai_stack, partner)["committed_tokens"] == used
    assert ledger(ai_stack, partner)["reserved_tokens"] == 0


def test_json_output_and_an_image_are_served(ai_stack: ProvisionedStack) -> None:
    partner = sign_up()
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8).decode()
    content = [{"type": "text", "text": "what is it"}, {"type": "image_url", "image_url": {"url": png}}]

    answer = chat_body(
        partner.api_key_id,
        messages=[{"role": "user", "content": content}],
        response_format={"type": "json_object"},
        max_tokens=10,
    )

    assert answer.status == HTTPStatus.OK, answer.body
    assert json.loads(answer.body["choices"][0]["message"]["content"]) == {"reply": "what is it"}
    # 3 words and one image at the offline provider's fixed 85 tokens
    assert answer.body["usage"]["prompt_tokens"] == 3 + 85


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_bad_tools_formats_and_images_are_400_naming_the_parameter(
    ai_stack: ProvisionedStack, fields: dict[str, Any], param: str
) -> None:
    partner = sign_up()

    answer = chat_body(partner.api_key_id, **{"messages": [{"role": "user", "content": "hi"}], **fields})

    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert answer.body["error"]["param"] == param
    assert ledger(ai_stack, partner) == {"requests": 1}
