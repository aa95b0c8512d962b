"""The Bedrock adapter against botocore's bedrock-runtime service model: Stubber pins the Converse request
and checks our stubbed answers are valid Converse responses; errors come as Bedrock documents them."""

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from core.ai.adapters.bedrock import JSON_OBJECT_INSTRUCTION, BedrockConverse
from core.ai.chat import ChatTurn, ForcedTool, Image, JsonOutput, ModelRequest, ToolCall, ToolSpec
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

MODEL_ID = "amazon.nova-micro-v1:0"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )


@pytest.fixture
def stubbed(client: Any) -> Iterator[tuple[BedrockConverse, Stubber]]:
    with Stubber(client) as stubber:
        yield BedrockConverse(client), stubber
        stubber.assert_no_pending_responses()


def conversation(**overrides: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "model": "nova-micro",
        "provider_model_id": MODEL_ID,
        "system": ("Be brief.", "Use English."),
        "turns": (
            ChatTurn("user", "Hello"),
            ChatTurn("user", "Are you there?"),
            ChatTurn("assistant", "Yes."),
            ChatTurn("user", "Good."),
        ),
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ("END",),
    }
    return ModelRequest(**{**values, **overrides})


def converse_answer(text: str, stop_reason: str = "end_turn", inputs: int = 12, outputs: int = 3) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs},
        "metrics": {"latencyMs": 321},
    }


def test_the_request_maps_to_converse_and_usage_maps_back(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    # Given Bedrock answering a Converse call for exactly this request
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer("Hi there."),
        {
            "modelId": MODEL_ID,
            "system": [{"text": "Be brief."}, {"text": "Use English."}],
            # consecutive user turns become one message: Converse wants the roles to alternate
            "messages": [
                {"role": "user", "content": [{"text": "Hello"}, {"text": "Are you there?"}]},
                {"role": "assistant", "content": [{"text": "Yes."}]},
                {"role": "user", "content": [{"text": "Good."}]},
            ],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
        },
    )

    # When the adapter completes it
    reply = provider.complete(conversation(), timeout_seconds=5)

    # Then the reply carries Bedrock's text, token usage and latency
    assert (reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens, reply.latency_ms) == (
        "Hi there.",
        "stop",
        12,
        3,
        321.0,
    )


def test_optional_parameters_are_left_out(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer("ok"),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": "x"}]}],
            "inferenceConfig": {"maxTokens": 8},
        },
    )

    provider.complete(
        conversation(system=(), turns=(ChatTurn("user", "x"),), max_tokens=8, temperature=None, top_p=None, stop=()),
        timeout_seconds=5,
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_become_openai_finish_reasons(
    stubbed: tuple[BedrockConverse, Stubber], stop_reason: str, finish_reason: str
) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_answer("text", stop_reason))

    assert provider.complete(conversation(), timeout_seconds=5).finish_reason == finish_reason


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, UpstreamThrottled),
        ("ModelNotReadyException", 429, UpstreamThrottled),
        ("ValidationException", 400, UpstreamRejected),
        ("ModelTimeoutException", 408, UpstreamTimedOut),
        ("InternalServerException", 500, UpstreamFailed),
        ("ServiceUnavailableException", 503, UpstreamFailed),
        ("ModelErrorException", 424, UpstreamFailed),
        ("AccessDeniedException", 403, UpstreamFailed),
        ("ResourceNotFoundException", 404, UpstreamFailed),
    ],
)
def test_bedrock_errors_become_upstream_errors(
    stubbed: tuple[BedrockConverse, Stubber], code: str, status: int, error: type[Exception]
) -> None:
    provider, stubber = stubbed
    stubber.add_client_error(
        "converse", service_error_code=code, service_message="from Bedrock", http_status_code=status
    )

    with pytest.raises(error):
        provider.complete(conversation(), timeout_seconds=5)


def test_a_validation_error_keeps_bedrocks_reason_for_the_caller(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_client_error(
        "converse", service_error_code="ValidationException", service_message="Input is too long for requested model."
    )

    with pytest.raises(UpstreamRejected, match="Input is too long"):
        provider.complete(conversation(), timeout_seconds=5)


def test_a_read_timeout_is_an_upstream_timeout(client: Any) -> None:
    # Given the connection timing out while Bedrock generates (botocore raises it from the HTTP layer)
    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse")

    client.meta.events.register("before-send.bedrock-runtime.Converse", time_out)

    # When the adapter completes
    # Then the caller gets a timeout, not a generic failure
    with pytest.raises(UpstreamTimedOut, match="3 s"):
        BedrockConverse(client).complete(conversation(), timeout_seconds=3)


# What Bedrock answers outside us-east-1 for a plain Nova model id (its apostrophe is typographic).
ON_DEMAND_REFUSAL = (
    "Invocation of model ID amazon.nova-micro-v1:0 with on-demand throughput isn\u2019t supported. Retry your "
    "request with the ID or ARN of an inference profile that contains this model."
)


@pytest.mark.parametrize(
    ("code", "status", "message", "operator_hint"),
    [
        ("ValidationException", 400, ON_DEMAND_REFUSAL, "set Models"),
        ("AccessDeniedException", 403, "You don't have access to the model with the specified model ID.", "IAM"),
        ("ResourceNotFoundException", 404, "Model not found.", "Models"),
    ],
)
def test_the_deployments_model_errors_are_502_for_the_operator_not_400_for_the_partner(
    stubbed: tuple[BedrockConverse, Stubber], code: str, status: int, message: str, operator_hint: str
) -> None:
    # Given Bedrock refusing the configured model (a plain id outside us-east-1, no access, an unknown id)
    provider, stubber = stubbed
    stubber.add_client_error("converse", service_error_code=code, service_message=message, http_status_code=status)

    # When a partner's chat is sent
    with pytest.raises(UpstreamFailed) as refused:
        provider.complete(conversation(), timeout_seconds=5)

    # Then it is the deployment's failure (502), never the caller's 400, and the logged message tells the
    # operator which model id failed, what Bedrock said and what to change
    assert not isinstance(refused.value, UpstreamRejected)
    assert MODEL_ID in refused.value.message
    assert code in refused.value.message
    assert operator_hint in refused.value.message


WEATHER = ToolSpec(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CALL = ToolCall("tooluse_1", "get_weather", '{"city": "Oslo"}')
ROUND_TRIP = (
    ChatTurn("user", "Weather in Oslo?"),
    ChatTurn("assistant", "Let me look.", tool_calls=(CALL,)),
    ChatTurn("tool", "12 degrees", tool_call_id="tooluse_1"),
    ChatTurn("user", "And tomorrow?"),
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def bare(**overrides: Any) -> ModelRequest:
    return conversation(system=(), temperature=None, top_p=None, stop=(), max_tokens=8, **overrides)


def test_tools_and_a_tool_round_trip_map_to_converse_tool_blocks(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    # Given a conversation with a tool call, its result, and a follow-up, the function forced by name
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer("ok"),
        {
            "modelId": MODEL_ID,
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"text": "Let me look."},
                        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Oslo"}}},
                    ],
                },
                # the tool result and the next user text are one user message: Converse wants alternation
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "12 degrees"}]}},
                        {"text": "And tomorrow?"},
                    ],
                },
            ],
            "inferenceConfig": {"maxTokens": 8},
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "get_weather",
                            "description": "Weather in a city",
                            "inputSchema": {"json": WEATHER.parameters},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": "get_weather"}},
            },
        },
    )

    # When the adapter completes it
    provider.complete(bare(turns=ROUND_TRIP, tools=(WEATHER,), tool_choice=ForcedTool("get_weather")), 5)


@pytest.mark.parametrize(("choice", "converse_choice"), [("required", {"any": {}}), ("auto", {"auto": {}})])
def test_tool_choice_maps_to_converses(
    stubbed: tuple[BedrockConverse, Stubber], choice: str, converse_choice: dict[str, Any]
) -> None:
    provider, stubber = stubbed
    tool = ToolSpec("now", None, None)
    stubber.add_response(
        "converse",
        converse_answer("ok"),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": "x"}]}],
            "inferenceConfig": {"maxTokens": 8},
            # a function without parameters still needs an input schema
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
                "toolChoice": converse_choice,
            },
        },
    )

    provider.complete(bare(turns=(ChatTurn("user", "x"),), tools=(tool,), tool_choice=choice), 5)


def test_tool_choice_none_sends_no_tools_and_the_history_as_text(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    # Given tool_choice none, which Converse cannot say, with tool calls already in the conversation
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer("ok"),
        {
            "modelId": MODEL_ID,
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"text": "Let me look."},
                        {"text": '[tool call tooluse_1: get_weather({"city": "Oslo"})]'},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"text": "[result of tool call tooluse_1]: 12 degrees"}, {"text": "And tomorrow?"}],
                },
            ],
            "inferenceConfig": {"maxTokens": 8},
        },
    )

    # Then no toolConfig is sent (so the model cannot call), and the calls made so far are text
    provider.complete(bare(turns=ROUND_TRIP, tools=(WEATHER,), tool_choice="none"), 5)


def test_images_are_image_blocks_with_their_bytes(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_answer("a cat"),
        {
            "modelId": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": [{"text": "What is it?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}],
                }
            ],
            "inferenceConfig": {"maxTokens": 8},
        },
    )

    provider.complete(bare(turns=(ChatTurn("user", "What is it?", images=(Image("png", PNG),)),)), 5)


def test_json_formats_are_structured_output_or_a_system_instruction(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    # Given a json_schema request (Converse's structured output) and a json_object one (no schema to give)
    provider, stubber = stubbed
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    stubber.add_response(
        "converse",
        converse_answer('{"a": "x"}'),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": "x"}]}],
            "inferenceConfig": {"maxTokens": 8},
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "answer"}},
                }
            },
        },
    )
    stubber.add_response(
        "converse",
        converse_answer("{}"),
        {
            "modelId": MODEL_ID,
            "system": [{"text": JSON_OBJECT_INSTRUCTION}],
            "messages": [{"role": "user", "content": [{"text": "x"}]}],
            "inferenceConfig": {"maxTokens": 8},
        },
    )

    provider.complete(bare(turns=(ChatTurn("user", "x"),), response_format=JsonOutput(schema, "answer")), 5)
    provider.complete(bare(turns=(ChatTurn("user", "x"),), response_format=JsonOutput()), 5)


def tool_use_answer(*calls: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    answer = converse_answer("", stop_reason="tool_use")
    answer["output"]["message"]["content"] = [
        {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}} for call_id, name, arguments in calls
    ]
    return answer


def test_tool_use_in_the_answer_becomes_openais_tool_calls(stubbed: tuple[BedrockConverse, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", tool_use_answer(("t1", "get_weather", {"city": "Oslo"}), ("t2", "now", {})))
    stubber.add_response("converse", tool_use_answer(("t1", "get_weather", {"city": "Oslo"}), ("t2", "now", {})))

    both = provider.complete(conversation(tools=(WEATHER,)), 5)
    first_only = provider.complete(conversation(tools=(WEATHER,), parallel_tool_calls=False), 5)

    assert (both.finish_reason, both.text) == ("tool_calls", "")
    assert both.tool_calls == (ToolCall("t1", "get_weather", '{"city": "Oslo"}'), ToolCall("t2", "now", "{}"))
    # parallel_tool_calls false: Converse cannot ask for one call at most, so only the first is kept
    assert first_only.tool_calls == both.tool_calls[:1]
