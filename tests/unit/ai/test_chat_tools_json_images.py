"""Tools, JSON output and images in OpenAI's chat request: what is accepted, the 400s that name the parameter,
the provider-neutral request they become, the answer's shape with tool calls, and the offline provider's
documented rule for them."""

import base64
import json
from typing import Any

import pytest

from core.ai.chat import (
    MAX_IMAGE_BYTES,
    ChatTurn,
    Completion,
    ForcedTool,
    Image,
    JsonOutput,
    ModelReply,
    ModelRequest,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    estimate_prompt_tokens,
    model_request,
    parse_chat_request,
)
from core.ai.offline_model import IMAGE_TOKENS, OfflineModel
from core.errors import InvalidRequest
from core.tier_policy import CatalogModel

MODEL = CatalogModel(name="m", provider_model_id="provider-id", max_output_tokens=1000)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "where": {"$ref": "#/$defs/Place"},
                "verbose": {"type": "boolean"},
            },
            "required": ["city", "unit", "days", "where"],
            "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
        },
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def parsed(body: dict[str, Any]) -> ModelRequest:
    return model_request(parse_chat_request(json.dumps({"model": "m", **body})), MODEL, default_max_tokens=64)


def test_tools_tool_calls_and_tool_results_map_to_the_provider_neutral_request() -> None:
    # Given a tool round trip: the user asks, the assistant called a function (content null), the tool answered
    request = parsed(
        {
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        }
    )

    # Then every part of it reaches the provider
    assert request.turns == (
        ChatTurn("user", "Weather in Oslo?"),
        ChatTurn("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        ChatTurn("tool", "12 degrees", tool_call_id="call_1"),
    )
    function = WEATHER["function"]
    assert request.tools == (ToolSpec("get_weather", "Weather in a city", function["parameters"]),)  # type: ignore[index]
    assert (request.tool_choice, request.parallel_tool_calls) == (ForcedTool("get_weather"), False)
    assert request.response_format == JsonOutput({"type": "object"}, "w")
    assert request.forced_tool == request.tools[0]


@pytest.mark.parametrize(
    ("media_type", "data", "image_format"),
    [("image/png", PNG, "png"), ("image/jpeg", JPEG, "jpeg"), ("image/gif", GIF, "gif"), ("image/webp", WEBP, "webp")],
)
def test_data_url_images_become_checked_image_bytes(media_type: str, data: bytes, image_format: str) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_url(data, media_type), "detail": "low"}},
    ]

    request = parsed({"messages": [{"role": "user", "content": content}]})

    assert request.turns == (ChatTurn("user", "What is this?", images=(Image(image_format, data, "low"),)),)  # type: ignore[arg-type]


HI = {"role": "user", "content": "hi"}


def image_message(url: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}],
    }


IMAGE_PARAM = "messages[0].content[1].image_url.url"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"messages": [HI], "tools": [{"type": "retrieval"}]}, "tools[0].type", ""),
        (
            {"messages": [HI], "tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools[0].function.name",
            "pattern",
        ),
        (
            {"messages": [HI], "tools": [{"type": "function", "function": {"name": "x" * 65}}]},
            "tools[0].function.name",
            "",
        ),
        (
            {
                "messages": [HI],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            },
            "tools[0].function",
            '"object"',
        ),
        ({"messages": [HI], "tools": [WEATHER, WEATHER]}, "tools", "own name"),
        (
            {"messages": [HI], "tools": [{"type": "function", "function": {"name": f"f{n}"}} for n in range(129)]},
            "tools",
            "",
        ),
        ({"messages": [HI], "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", ""),
        (
            {"messages": [HI], "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            "tool_choice",
            "other",
        ),
        ({"messages": [HI], "tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"messages": [HI, {"role": "tool", "content": "x"}]}, "messages[1]", "tool_call_id"),
        (
            {"messages": [HI, {"role": "tool", "tool_call_id": "nope", "content": "x"}]},
            "messages[1].tool_call_id",
            "no earlier",
        ),
        (
            {
                "messages": [
                    HI,
                    {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}]},
                ]
            },
            "messages[1].tool_calls[0].function",
            "JSON object",
        ),
        ({"messages": [{**HI, "tool_calls": [CALL]}]}, "messages[0]", "only assistant"),
        ({"messages": [HI], "response_format": {"type": "xml"}}, "response_format.type", ""),
        ({"messages": [HI], "response_format": {"type": "json_schema"}}, "response_format", "json_schema is required"),
        (
            {"messages": [HI], "response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
            "",
        ),
        ({"messages": [image_message("https://example.com/cat.png")]}, IMAGE_PARAM, "not fetched"),
        ({"messages": [image_message("http://169.254.169.254/latest/meta-data")]}, IMAGE_PARAM, "not fetched"),
        ({"messages": [image_message("data:image/bmp;base64,Qk0=")]}, IMAGE_PARAM, "PNG, JPEG, GIF or WebP"),
        ({"messages": [image_message("data:image/png,rawbytes")]}, IMAGE_PARAM, "base64 data: URL"),
        ({"messages": [image_message("data:image/png;base64,@@@@")]}, IMAGE_PARAM, "not valid base64"),
        ({"messages": [image_message(data_url(JPEG, "image/png"))]}, IMAGE_PARAM, "not a PNG image"),
        ({"messages": [image_message(data_url(b"RIFF\x10\x00\x00\x00WAVEfmt ", "image/webp"))]}, IMAGE_PARAM, "WEBP"),
        (
            {"messages": [image_message(data_url(PNG + b"\x00" * MAX_IMAGE_BYTES))]},
            IMAGE_PARAM,
            f"{MAX_IMAGE_BYTES} bytes",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "max"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.detail",
            "auto, low or high",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:..."}]}]},
            "messages[0].content[0].image_url",
            "",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": data_url(PNG)}}]},
                    HI,
                ]
            },
            "messages[0]",
            "of type text",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0]", ""),
        ({"messages": [image_message(data_url(PNG))] * 21}, "messages", "at most 20 images"),
    ],
)
def test_bad_tools_json_formats_and_images_are_400_naming_the_parameter(
    body: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parsed(body)

    assert refused.value.param == param
    assert message in refused.value.message


def test_an_image_of_exactly_the_limit_is_accepted() -> None:
    image = PNG + b"\x00" * (MAX_IMAGE_BYTES - len(PNG))

    request = parsed({"messages": [image_message(data_url(image))]})

    assert len(request.turns[0].images[0].data) == MAX_IMAGE_BYTES


def test_zero_penalties_and_harmless_fields_are_accepted() -> None:
    request = parsed({"messages": [HI], "presence_penalty": 0, "frequency_penalty": 0.0, "store": False, "seed": 1})

    assert request.turns == (ChatTurn("user", "hi"),)


def test_an_answer_with_tool_calls_has_openais_shape() -> None:
    reply = ModelReply("", "tool_calls", 10, 5, tool_calls=(ToolCall("call_9", "get_weather", '{"city": "Oslo"}'),))

    body = Completion(model="m", reply=reply).body()

    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
        ],
    }


def test_the_estimate_counts_tool_definitions_tool_messages_and_images() -> None:
    plain = parsed({"messages": [HI]})
    with_tools = parsed({"messages": [HI], "tools": [WEATHER]})
    with_round_trip = parsed(
        {
            "messages": [
                HI,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
            ],
            "tools": [WEATHER],
        }
    )
    with_image = parsed({"messages": [image_message(data_url(PNG)), HI]})

    assert estimate_prompt_tokens(plain) < estimate_prompt_tokens(with_tools) < estimate_prompt_tokens(with_round_trip)
    assert estimate_prompt_tokens(with_image) >= 1600
    offline = OfflineModel()
    assert offline.estimate_prompt_tokens(with_tools) > offline.estimate_prompt_tokens(plain)
    assert offline.estimate_prompt_tokens(with_image) == 2 + IMAGE_TOKENS


def test_the_offline_provider_calls_a_forced_function_with_its_required_arguments() -> None:
    # Given a request forcing get_weather
    request = parsed(
        {"messages": [HI], "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    )

    # When the offline provider answers
    reply = OfflineModel().complete(request, timeout_seconds=1)

    # Then it is a call to it, with every required property valued from its schema
    [call] = reply.tool_calls
    assert (reply.finish_reason, reply.text, call.name) == ("tool_calls", "", "get_weather")
    assert json.loads(call.arguments) == {"city": "string", "unit": "celsius", "days": 1, "where": {"lat": 0}}
    assert call.id.startswith("call_")
    # And its usage is its documented word count, the same on every run
    assert reply.completion_tokens == len(f"get_weather {call.arguments}".split())
    assert reply.prompt_tokens == OfflineModel().estimate_prompt_tokens(request)
    assert OfflineModel().complete(request, timeout_seconds=1) == reply


def test_required_with_one_tool_forces_it_and_with_two_does_not() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    one = parsed({"messages": [HI], "tools": [WEATHER], "tool_choice": "required"})
    two = parsed({"messages": [HI], "tools": [WEATHER, other], "tool_choice": "required"})
    auto = parsed({"messages": [HI], "tools": [WEATHER]})

    assert OfflineModel().complete(one, timeout_seconds=1).tool_calls[0].name == "get_weather"
    assert OfflineModel().complete(two, timeout_seconds=1).text == "hi"
    assert OfflineModel().complete(auto, timeout_seconds=1).text == "hi"


def test_the_offline_provider_answers_a_tool_message_with_text() -> None:
    # Given the call's result sent back, still with the function forced
    request = parsed(
        {
            "messages": [
                HI,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12  degrees"},
            ],
            "tools": [WEATHER],
            "tool_choice": "required",
        }
    )

    reply = OfflineModel().complete(request, timeout_seconds=1)

    # Then the answer is text (the tool's words), so the round trip ends
    assert (reply.text, reply.finish_reason, reply.tool_calls, reply.completion_tokens) == ("12 degrees", "stop", (), 2)


def test_the_offline_provider_answers_json_formats_with_valid_json() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
        "required": ["answer", "score"],
    }
    as_object = parsed(
        {"messages": [{"role": "user", "content": "hello  world"}], "response_format": {"type": "json_object"}}
    )
    as_schema = parsed(
        {"messages": [HI], "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}}
    )

    object_reply = OfflineModel().complete(as_object, timeout_seconds=1)
    schema_reply = OfflineModel().complete(as_schema, timeout_seconds=1)

    assert json.loads(object_reply.text) == {"reply": "hello world"}
    assert json.loads(schema_reply.text) == {"answer": "string", "score": 0}
    assert schema_reply.completion_tokens == len(schema_reply.text.split())


def test_a_forced_call_longer_than_max_tokens_is_cut_like_a_models() -> None:
    request = parsed({"messages": [HI], "tools": [WEATHER], "tool_choice": "required", "max_tokens": 3})

    reply = OfflineModel().complete(request, timeout_seconds=1)

    assert (reply.finish_reason, reply.completion_tokens) == ("length", 3)


def test_the_offline_provider_streams_a_tool_call_as_tool_call_deltas() -> None:
    request = parsed({"messages": [HI], "tools": [WEATHER], "tool_choice": "required"})
    reply = OfflineModel().complete(request, timeout_seconds=1)

    events = list(OfflineModel().stream(request, timeout_seconds=1))

    deltas, end = events[:-1], events[-1]
    assert not [event for event in deltas if isinstance(event, TextDelta)]
    calls = [event for event in deltas if isinstance(event, ToolCallDelta)]
    assert (calls[0].index, calls[0].id, calls[0].name) == (0, reply.tool_calls[0].id, "get_weather")
    assert len(calls) > 2 and all(call.index == 0 and call.id is None for call in calls[1:])
    assert "".join(call.arguments for call in calls) == reply.tool_calls[0].arguments
    assert end == StreamEnd("tool_calls", reply.prompt_tokens, reply.completion_tokens)


RECURSIVE = {
    "type": "object",
    "properties": {"node": {"$ref": "#/$defs/Node"}},
    "required": ["node"],
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {name: {"$ref": "#/$defs/Node"} for name in "abcdefgh"},
            "required": list("abcdefgh"),
        }
    },
}


@pytest.mark.parametrize(
    "parameters",
    [
        RECURSIVE,
        {"type": "object", "properties": "not an object", "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "array", "minItems": 10**9}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 10**9}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": "five"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "array", "minItems": 10**400}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "number", "minimum": 10**400}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"enum": "abc"}, "b": {"anyOf": {}}}, "required": ["a", "b", 7]},
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema"}}, "required": "a"},
        {
            "type": "object",
            "properties": {"a": {"type": ["null"]}, "b": {"type": "number", "exclusiveMinimum": 2.5}},
            "required": ["a", "b"],
        },
    ],
)
def test_the_offline_provider_answers_any_schema_quickly_and_in_bounds(parameters: dict[str, Any]) -> None:
    # Given a forced function with a hostile or odd schema
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    request = parsed({"messages": [HI], "tools": [tool], "tool_choice": "required", "max_tokens": 1000})

    # When the offline provider calls it
    reply = OfflineModel().complete(request, timeout_seconds=1)

    # Then it answers with bounded arguments (never a 500, never a huge answer)
    [call] = reply.tool_calls
    assert len(call.arguments) < 100_000
    assert reply.finish_reason in ("tool_calls", "length")


def test_the_offline_provider_counts_a_tool_definition_by_its_documented_words() -> None:
    # Given a tool: name (1 word), description (4 words), parameters as json.dumps writes them (6 words)
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": parameters},
    }
    bare = {"type": "function", "function": {"name": "now"}}

    request = parsed({"messages": [HI], "tools": [tool, bare]})

    # Then: 1 for "hi", 1 + 4 + 6 for the first tool, 1 for the bare one
    assert OfflineModel().estimate_prompt_tokens(request) == 1 + (1 + 4 + 6) + 1
