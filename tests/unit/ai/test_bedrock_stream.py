"""The Bedrock adapter's ConverseStream mapping, through botocore's own event-stream parsing.

Stubber cannot fake an event stream, so the fake sits one layer lower and keeps botocore's whole contract:
a `before-send` hook answers the real, serialized and validated HTTP request with an HTTP 200 whose body is
binary `application/vnd.amazon.eventstream` messages (prelude, headers, JSON payload, CRCs) encoded as
Bedrock sends them. botocore then parses each one against the bedrock-runtime service model, exactly as
with Bedrock: the events are ConverseStreamOutput's members, and an exception message
(`:message-type: exception`) is raised from the iterator as an EventStreamError.
"""

import binascii
import json
import struct
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from core.ai.adapters.bedrock import BedrockConverse
from core.ai.chat import ChatTurn, ModelRequest, StreamEnd, TextDelta, ToolCallDelta, ToolSpec
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled

MODEL_ID = "amazon.nova-micro-v1:0"


def _header(name: str, value: str) -> bytes:
    encoded = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded


def event_message(headers: dict[str, str], payload: dict[str, Any]) -> bytes:
    """One event-stream message: total and headers length, prelude CRC, headers, payload, message CRC."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(header_bytes) + len(body) + 4, len(header_bytes))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + header_bytes + body
    return message + struct.pack(">I", binascii.crc32(message))


def event(name: str, payload: dict[str, Any]) -> bytes:
    return event_message({":event-type": name, ":content-type": "application/json", ":message-type": "event"}, payload)


def exception(name: str, message: str) -> bytes:
    return event_message(
        {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"},
        {"message": message},
    )


class EventBody:
    """The raw HTTP body botocore reads an event stream from: `stream()` yields chunks, `close()` hangs up."""

    def __init__(self, messages: list[bytes]) -> None:
        self._messages = messages
        self.closed = False
        self.chunks_read = 0

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        for message in self._messages:
            if self.closed:
                return
            self.chunks_read += 1
            # split each message in two chunks: botocore must reassemble messages across reads
            yield message[:10]
            yield message[10:]

    def close(self) -> None:
        self.closed = True


class FakeConverseStream:
    def __init__(self, client: Any, messages: list[bytes]) -> None:
        self.body = EventBody(messages)
        self.requests: list[dict[str, Any]] = []
        client.meta.events.register("before-send.bedrock-runtime.ConverseStream", self._answer)

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(json.loads(request.body))
        headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "r-1"}
        return AWSResponse(request.url, 200, headers, self.body)  # type: ignore[arg-type]


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # botocore signs the request before before-send
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def request(**overrides: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "model": "nova-micro",
        "provider_model_id": MODEL_ID,
        "system": (),
        "turns": (ChatTurn("user", "Weather in Oslo?"),),
        "max_tokens": 50,
    }
    return ModelRequest(**{**values, **overrides})


START = event("messageStart", {"role": "assistant"})


def metadata(inputs: int, outputs: int) -> bytes:
    usage = {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 200}})


def text_delta(text: str, index: int = 0) -> bytes:
    return event("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": index})


def stop(reason: str) -> bytes:
    return event("messageStop", {"stopReason": reason})


def test_text_deltas_then_the_final_metadata_usage(client: Any) -> None:
    # Given Bedrock streaming two text deltas, then its stop reason, then the usage (last, as it does)
    fake = FakeConverseStream(
        client,
        [
            START,
            text_delta("Hello"),
            text_delta(" there."),
            event("contentBlockStop", {"contentBlockIndex": 0}),
            stop("max_tokens"),
            metadata(12, 3),
        ],
    )

    # When the adapter streams a request
    events = list(BedrockConverse(client).stream(request(temperature=0.5), timeout_seconds=5))

    # Then it sent ConverseStream the same request as Converse, and yields the deltas then the usage
    assert fake.requests == [
        {
            "messages": [{"role": "user", "content": [{"text": "Weather in Oslo?"}]}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.5},
        }
    ]
    assert events == [TextDelta("Hello"), TextDelta(" there."), StreamEnd("length", 12, 3)]
    assert fake.body.closed


def test_tool_use_streams_as_tool_call_deltas(client: Any) -> None:
    # Given a text block, then two tool-use blocks whose input JSON arrives in pieces
    tool_start = {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}
    FakeConverseStream(
        client,
        [
            START,
            text_delta("Checking."),
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event("contentBlockStart", {"start": tool_start, "contentBlockIndex": 1}),
            event("contentBlockDelta", {"delta": {"toolUse": {"input": '{"city": '}}, "contentBlockIndex": 1}),
            event("contentBlockDelta", {"delta": {"toolUse": {"input": '"Oslo"}'}}, "contentBlockIndex": 1}),
            event("contentBlockStop", {"contentBlockIndex": 1}),
            event(
                "contentBlockStart",
                {"start": {"toolUse": {"toolUseId": "tooluse_b", "name": "now"}}, "contentBlockIndex": 2},
            ),
            event("contentBlockDelta", {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 2}),
            event("contentBlockStop", {"contentBlockIndex": 2}),
            stop("tool_use"),
            metadata(30, 20),
        ],
    )
    tools = (ToolSpec("get_weather"), ToolSpec("now"))

    events = list(BedrockConverse(client).stream(request(tools=tools), timeout_seconds=5))

    # Then each tool call has its own index (counted among tool calls only), its id and name first
    assert events == [
        TextDelta("Checking."),
        ToolCallDelta(0, id="tooluse_a", name="get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Oslo"}'),
        ToolCallDelta(1, id="tooluse_b", name="now"),
        ToolCallDelta(1, "{}"),
        StreamEnd("tool_calls", 30, 20),
    ]


def test_parallel_tool_calls_false_streams_only_the_first_call(client: Any) -> None:
    FakeConverseStream(
        client,
        [
            START,
            event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "a", "name": "f"}}, "contentBlockIndex": 0}),
            event("contentBlockDelta", {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 0}),
            event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "b", "name": "f"}}, "contentBlockIndex": 1}),
            event("contentBlockDelta", {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 1}),
            stop("tool_use"),
            metadata(5, 5),
        ],
    )

    events = list(BedrockConverse(client).stream(request(tools=(ToolSpec("f"),), parallel_tool_calls=False), 5))

    assert events == [ToolCallDelta(0, id="a", name="f"), ToolCallDelta(0, "{}"), StreamEnd("tool_calls", 5, 5)]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("throttlingException", UpstreamThrottled),
        ("modelStreamErrorException", UpstreamFailed),
        ("serviceUnavailableException", UpstreamFailed),
        ("internalServerException", UpstreamFailed),
        ("validationException", UpstreamRejected),
    ],
)
def test_an_exception_inside_the_stream_is_raised_as_the_domains_error(
    client: Any, name: str, error: type[Exception]
) -> None:
    # Given Bedrock failing after the first delta, with an exception event
    fake = FakeConverseStream(client, [START, text_delta("Hel"), exception(name, "Too many tokens, slow down.")])

    # When the adapter streams
    stream = BedrockConverse(client).stream(request(), timeout_seconds=5)

    # Then the delta arrives, then the iterator raises the upstream error, and the stream is closed
    assert next(stream) == TextDelta("Hel")
    with pytest.raises(error):
        next(stream)
    assert fake.body.closed


def test_a_stream_without_metadata_ends_without_usage(client: Any) -> None:
    FakeConverseStream(client, [START, text_delta("Hi"), stop("end_turn")])

    events = list(BedrockConverse(client).stream(request(), timeout_seconds=5))

    assert events == [TextDelta("Hi"), StreamEnd("stop")]


def test_closing_the_iterator_closes_the_event_stream(client: Any) -> None:
    # Given a long stream of which the caller reads one delta
    fake = FakeConverseStream(client, [START, *(text_delta(f"w{n} ") for n in range(100)), stop("end_turn")])
    stream = BedrockConverse(client).stream(request(), timeout_seconds=5)
    assert next(stream) == TextDelta("w0 ")

    # When it closes the iterator (the client went away)
    stream.close()

    # Then the HTTP body is closed and no more of it is read
    assert fake.body.closed
    assert fake.body.chunks_read < 10


def test_an_error_before_the_stream_keeps_todays_mapping(client: Any) -> None:
    # Given Bedrock refusing the call itself (HTTP 429 before any event)
    def throttle(request: Any, **_: Any) -> AWSResponse:
        body = json.dumps({"message": "Too many requests"}).encode()
        headers = {
            "x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/",
            "content-type": "application/json",
        }
        return AWSResponse(request.url, 429, headers, _Raw(body))  # type: ignore[arg-type]

    client.meta.events.register("before-send.bedrock-runtime.ConverseStream", throttle)

    with pytest.raises(UpstreamThrottled):
        next(BedrockConverse(client).stream(request(), timeout_seconds=5))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._body
