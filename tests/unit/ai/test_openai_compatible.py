"""The OpenAI-compatible provider against a fake upstream that keeps OpenAI's documented contract, and the
upstream key read from Secrets Manager or SSM (moto) through Powertools parameters."""

import base64
from collections.abc import Iterator

import boto3
import pytest

from core.ai.adapters.openai_compatible import OpenAICompatible
from core.ai.adapters.upstream_key import UpstreamApiKey
from core.ai.chat import (
    ChatTurn,
    ForcedTool,
    Image,
    JsonOutput,
    ModelRequest,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from core.errors import ProviderMisconfigured, UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut
from tests.fake_openai_upstream import FakeUpstream, chat_completion, chunk, error_body, fake_upstream, usage_chunk

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as running:
        yield running


def conversation(**overrides: object) -> ModelRequest:
    values: dict[str, object] = {
        "model": "gpt-small",
        "provider_model_id": "gpt-4o-mini",
        "system": ("Be brief.",),
        "turns": (ChatTurn("user", "Hello"), ChatTurn("assistant", "Hi."), ChatTurn("user", "Again")),
        "max_tokens": 40,
        "temperature": 0.1,
        "top_p": None,
        "stop": ("END",),
    }
    return ModelRequest(**{**values, **overrides})  # type: ignore[arg-type]


def test_the_request_is_openais_and_the_answer_maps_back(upstream: FakeUpstream) -> None:
    # Given an upstream that answers a chat completion
    upstream.then_answer(200, chat_completion("Hello back.", prompt_tokens=17, completion_tokens=4, finish="length"))
    provider = OpenAICompatible(upstream.base_url, api_key=lambda: UPSTREAM_KEY)

    # When the provider completes a conversation
    reply = provider.complete(conversation(), timeout_seconds=5)

    # Then it posted OpenAI's request with the upstream's model id and our upstream key
    [received] = upstream.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Again"},
        ],
        "max_tokens": 40,
        "stream": False,
        "temperature": 0.1,
        "stop": ["END"],
    }
    # And the reply is the upstream's text, finish reason and usage
    assert (reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens) == (
        "Hello back.",
        "length",
        17,
        4,
    )


def test_an_answer_without_usage_is_charged_at_the_estimate(upstream: FakeUpstream) -> None:
    answer = chat_completion("twelve bytes", 0, 0)
    del answer["usage"]
    upstream.then_answer(200, answer)

    reply = OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)

    # (9 + 5 + 3 + 5 bytes) / 3 -> 8 tokens + 8 per message; 12 bytes of reply -> 4 tokens
    assert (reply.prompt_tokens, reply.completion_tokens) == (8 + 32, 4)
    assert "authorization" not in upstream.requests[0].headers


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (400, error_body("maximum context length is 8192 tokens"), UpstreamRejected, "maximum context length"),
        (422, error_body("bad stop"), UpstreamRejected, "bad stop"),
        (401, error_body("Incorrect API key provided", code="invalid_api_key"), UpstreamFailed, "401"),
        (404, error_body("The model does not exist", code="model_not_found"), UpstreamFailed, "404"),
        (500, error_body("The server had an error", "server_error"), UpstreamFailed, "500"),
        (503, b"<html>bad gateway</html>", UpstreamFailed, "no error message"),
        (200, {"not": "a completion"}, UpstreamFailed, "not a chat completion"),
        (504, error_body("upstream timed out", "server_error"), UpstreamTimedOut, "5 s"),
    ],
)
def test_upstream_errors_become_domain_errors(
    upstream: FakeUpstream, status: int, body: object, error: type[Exception], message: str
) -> None:
    upstream.then_answer(status, body)

    with pytest.raises(error, match=message):
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)


def test_throttling_keeps_the_upstreams_retry_after(upstream: FakeUpstream) -> None:
    upstream.then_answer(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"), {"Retry-After": "7"})

    with pytest.raises(UpstreamThrottled) as throttled:
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)

    assert throttled.value.retry_after_seconds == 7


def test_a_slow_upstream_times_out(upstream: FakeUpstream) -> None:
    # Given an upstream that answers after 5 s
    upstream.then_answer(200, chat_completion("late", 1, 1), delay=5)

    # When the provider waits at most 0.2 s
    # Then it gives up with a timeout (and the test does not wait for the upstream)
    with pytest.raises(UpstreamTimedOut):
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=0.2)


def test_an_unreachable_upstream_fails() -> None:
    with pytest.raises(UpstreamFailed, match="could not be reached"):
        OpenAICompatible("http://127.0.0.1:9/v1").complete(conversation(), timeout_seconds=1)


@pytest.mark.parametrize(
    ("stored", "expected"), [(UPSTREAM_KEY, UPSTREAM_KEY), ('{"api_key": "' + UPSTREAM_KEY + '"}', UPSTREAM_KEY)]
)
def test_the_upstream_key_is_read_from_secrets_manager(aws: None, stored: str, expected: str) -> None:
    boto3.client("secretsmanager").create_secret(Name="metered-ai/openai", SecretString=stored)

    assert UpstreamApiKey("secretsmanager", "metered-ai/openai").value() == expected


def test_the_upstream_key_is_read_from_an_ssm_secure_string(aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/metered-ai/openai-key", Value=UPSTREAM_KEY, Type="SecureString")

    assert UpstreamApiKey("ssm", "/metered-ai/openai-key").value() == UPSTREAM_KEY


def test_a_missing_or_malformed_upstream_key_is_a_configuration_error(aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="wrong-shape", SecretString='{"key": "x"}')

    with pytest.raises(ProviderMisconfigured, match="secretsmanager 'absent'") as missing:
        UpstreamApiKey("secretsmanager", "absent").value()
    with pytest.raises(ProviderMisconfigured, match="api_key"):
        UpstreamApiKey("secretsmanager", "wrong-shape").value()
    assert UPSTREAM_KEY not in str(missing.value)


WEATHER = ToolSpec("get_weather", "Weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}})
CALL = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def test_tools_json_formats_tool_messages_and_images_are_passed_through(upstream: FakeUpstream) -> None:
    # Given a conversation with an image, a tool call and its result, tools forced by name and a JSON schema
    upstream.then_answer(200, chat_completion("ok", 1, 1))
    request = conversation(
        system=(),
        turns=(
            ChatTurn("user", "Look", images=(Image("png", PNG, "low"),)),
            ChatTurn("assistant", "", tool_calls=(CALL,)),
            ChatTurn("tool", "12 degrees", tool_call_id="call_1"),
        ),
        stop=(),
        temperature=None,
        tools=(WEATHER,),
        tool_choice=ForcedTool("get_weather"),
        parallel_tool_calls=False,
        response_format=JsonOutput({"type": "object"}, "answer", strict=True),
    )

    # When the provider completes it
    OpenAICompatible(upstream.base_url).complete(request, timeout_seconds=5)

    # Then the upstream got all of it in OpenAI's shape
    png_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert upstream.requests[0].body == {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": png_url, "detail": "low"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [CALL.body()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
        ],
        "max_tokens": 40,
        "stream": False,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
    }


def test_tool_calls_in_the_answer_map_back(upstream: FakeUpstream) -> None:
    answer = chat_completion("", 20, 9, finish="tool_calls")
    answer["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [CALL.body()]}
    upstream.then_answer(200, answer)

    reply = OpenAICompatible(upstream.base_url).complete(conversation(tools=(WEATHER,)), timeout_seconds=5)

    assert (reply.text, reply.finish_reason, reply.tool_calls) == ("", "tool_calls", (CALL,))


def test_a_stream_asks_for_usage_and_yields_deltas_then_the_usage(upstream: FakeUpstream) -> None:
    # Given an upstream streaming role, two pieces of text, the finish reason, then the usage chunk
    upstream.then_stream(
        [
            chunk(role="assistant", content=""),
            chunk("Hello"),
            chunk(" back."),
            chunk(finish="length"),
            usage_chunk(17, 4),
        ]
    )

    # When the provider streams
    events = list(OpenAICompatible(upstream.base_url, api_key=lambda: UPSTREAM_KEY).stream(conversation(), 5))

    # Then it asked for a stream with the usage, whatever the caller asked, and maps every chunk
    body = upstream.requests[0].body
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
    assert upstream.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert events == [TextDelta("Hello"), TextDelta(" back."), StreamEnd("length", 17, 4)]


def test_streamed_tool_calls_become_tool_call_deltas(upstream: FakeUpstream) -> None:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    upstream.then_stream(
        [
            chunk(role="assistant", tool_calls=[first]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
            chunk(tool_calls=[{"index": 0, "function": {"arguments": ' "Oslo"}'}}]),
            chunk(finish="tool_calls"),
            usage_chunk(30, 12),
        ]
    )

    events = list(OpenAICompatible(upstream.base_url).stream(conversation(tools=(WEATHER,)), 5))

    assert events == [
        ToolCallDelta(0, "", "call_1", "get_weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, ' "Oslo"}'),
        StreamEnd("tool_calls", 30, 12),
    ]


def test_deltas_arrive_before_the_upstream_has_finished(upstream: FakeUpstream) -> None:
    # Given an upstream that sends two chunks, then waits before the rest
    upstream.then_stream(
        [chunk(role="assistant", content="first"), chunk(" second"), chunk(finish="stop")], pause_after=2
    )
    stream = OpenAICompatible(upstream.base_url).stream(conversation(), timeout_seconds=5)

    # When the provider is read while the upstream waits
    # Then the deltas already sent are there (a buffered read would wait for the whole body)
    assert next(stream) == TextDelta("first")
    assert next(stream) == TextDelta(" second")
    upstream.resume_stream()
    assert list(stream) == [StreamEnd("stop")]


def test_an_error_frame_inside_the_stream_is_raised(upstream: FakeUpstream) -> None:
    # OpenAI's error shape, as a data frame after the stream has started
    throttled = error_body("Rate limit reached", "tokens", "rate_limit_exceeded")
    failed = error_body("The server had an error", "server_error")
    upstream.then_stream([chunk(role="assistant", content="Hel"), throttled], done=False)
    upstream.then_stream([chunk(role="assistant", content="Hel"), failed], done=False)

    for error in (UpstreamThrottled, UpstreamFailed):
        stream = OpenAICompatible(upstream.base_url).stream(conversation(), 5)
        assert next(stream) == TextDelta("Hel")
        with pytest.raises(error):
            next(stream)


def test_a_stream_cut_before_its_end_is_a_failure_and_one_without_usage_has_none(upstream: FakeUpstream) -> None:
    upstream.then_stream([chunk(role="assistant", content="Hel")], done=False)
    upstream.then_stream([chunk("Hi"), chunk(finish="stop")])

    with pytest.raises(UpstreamFailed, match="ended before"):
        list(OpenAICompatible(upstream.base_url).stream(conversation(), 5))
    assert list(OpenAICompatible(upstream.base_url).stream(conversation(), 5)) == [TextDelta("Hi"), StreamEnd("stop")]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"), UpstreamThrottled),
        (400, error_body("bad request"), UpstreamRejected),
        (500, error_body("boom", "server_error"), UpstreamFailed),
    ],
)
def test_upstream_errors_before_the_stream_keep_todays_mapping(
    upstream: FakeUpstream, status: int, body: object, error: type[Exception]
) -> None:
    upstream.then_answer(status, body)

    with pytest.raises(error):
        next(OpenAICompatible(upstream.base_url).stream(conversation(), 5))


def test_a_stalled_stream_times_out_between_events(upstream: FakeUpstream) -> None:
    upstream.then_stream([chunk(role="assistant", content="Hel"), chunk("lo"), chunk(finish="stop")], pause_after=1)
    stream = OpenAICompatible(upstream.base_url).stream(conversation(), timeout_seconds=0.3)

    assert next(stream) == TextDelta("Hel")
    with pytest.raises(UpstreamTimedOut):
        next(stream)
