"""`stream: true` on POST /v1/chat/completions, in-process on the emulated stack: the chat function's ASGI app
driven as the Lambda Web Adapter drives it (tests/lwa_client.py). OpenAI's server-sent events, metering under
streaming (reported usage, no usage, a disconnect, the deadline, a failed settlement), errors before and
after the first byte, and tool-call deltas from a provider typed against the ModelProvider port."""

import json
import os
from http import HTTPStatus
from typing import Any

import pytest

from core.ai.chat import StreamEnd, TextDelta, ToolCallDelta
from core.ai.service import chat_api
from core.ai.streaming import STREAM_END_MARGIN_SECONDS, open_stream
from core.errors import UpstreamThrottled
from handlers import chat_completions
from offline.provision import ProvisionedStack
from tests.fakes import ScriptedModel
from tests.faults import fails_once
from tests.integration.ai.test_ai_api import chat, event, ledger, sign_up
from tests.lwa_client import AppAnswer, invoke


def stream_chat(
    key_id: str,
    words: int = 4,
    max_tokens: int = 10,
    *,
    remaining_ms: int = 900_000,
    disconnect_after: int | None = None,
    **fields: Any,
) -> AppAnswer:
    """The streamed form of test_ai_api.chat's request, sent as the adapter sends it, `fields` in its body."""
    body = {
        "model": "nova-micro",
        "messages": [{"role": "user", "content": " ".join(["word"] * words)}],
        "max_tokens": max_tokens,
        "stream": True,
        **fields,
    }
    sent = event("chat_completions.json", key_id, body)
    return invoke(chat_completions.app, sent, remaining_ms, disconnect_after)


def chunks(answer: AppAnswer) -> list[dict[str, Any]]:
    """The JSON events before [DONE] (which must be the last event)."""
    events = answer.events()
    assert events[-1] == "[DONE]", events[-1]
    return [json.loads(data) for data in events[:-1]]


def content(parsed: list[dict[str, Any]]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in parsed if chunk["choices"])


def test_a_stream_is_openais_server_sent_events_with_the_usage_chunk_last(ai_stack: ProvisionedStack) -> None:
    # Given a free partner, and the buffered answer to the same request
    partner = sign_up()
    buffered = chat(partner.api_key_id, words=4, max_tokens=10).body

    # When it asks for the same completion streamed, with the usage
    answer = stream_chat(partner.api_key_id, stream_options={"include_usage": True})

    # Then the answer is an event stream of chat.completion.chunk objects of one id, then [DONE]
    assert answer.status == HTTPStatus.OK
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-request-id"]
    parsed = chunks(answer)
    assert {chunk["object"] for chunk in parsed} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in parsed}) == 1
    assert {chunk["model"] for chunk in parsed} == {"nova-micro"}
    # the role comes first, the content in several chunks, finish_reason on the last choice chunk
    *choice_chunks, usage_chunk = parsed
    assert choice_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert len([chunk for chunk in choice_chunks if chunk["choices"][0]["delta"].get("content")]) == 4
    assert [chunk["choices"][0]["finish_reason"] for chunk in choice_chunks] == [None] * 5 + ["stop"]
    assert content(choice_chunks) == buffered["choices"][0]["message"]["content"] == "word word word word"
    # usage null on every chunk but the last, which has no choices and the usage
    assert {chunk["usage"] is None for chunk in choice_chunks} == {True}
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == buffered["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    # And the ledger charged exactly that (twice: the buffered and the streamed request), with nothing reserved
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"], counters["requests"]) == (16, 0, 2)


def test_without_include_usage_no_chunk_has_a_usage_field(ai_stack: ProvisionedStack) -> None:
    partner = sign_up()

    parsed = chunks(stream_chat(partner.api_key_id))

    assert all("usage" not in chunk for chunk in parsed)
    assert all(chunk["choices"] for chunk in parsed)
    assert ledger(ai_stack, partner)["committed_tokens"] == 8


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"max_tokens": 500}, HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota"),  # 504 tokens, budget 200
        ({"model": "nova-pro"}, HTTPStatus.FORBIDDEN, "model_not_in_tier"),
        ({"stream_options": {"include_usage": "yes"}}, HTTPStatus.BAD_REQUEST, "invalid_request"),
        ({"stream": "true"}, HTTPStatus.BAD_REQUEST, "invalid_request"),
        ({"stream": 1}, HTTPStatus.BAD_REQUEST, "invalid_request"),
        ({"stream_options": None, "stream": None, "messages": "hi"}, HTTPStatus.BAD_REQUEST, "invalid_request"),
    ],
)
def test_an_error_before_the_first_byte_keeps_its_status_and_json_shape(
    ai_stack: ProvisionedStack, fields: dict[str, Any], status: HTTPStatus, code: str
) -> None:
    partner = sign_up()

    answer = stream_chat(partner.api_key_id, **fields)

    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.text)["error"]["code"] == code
    assert ledger(ai_stack, partner).get("reserved_tokens", 0) == 0


def test_tool_call_deltas_are_framed_as_openais_tool_calls(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    # Given a provider that streams a call to get_weather in three pieces, then finishes for tool_calls
    provider.append(
        ScriptedModel(
            [
                ToolCallDelta(index=0, id="call_1", name="get_weather"),
                ToolCallDelta(index=0, arguments='{"city": '),
                ToolCallDelta(index=0, arguments='"Paris"}'),
                StreamEnd("tool_calls", prompt_tokens=4, completion_tokens=7),
            ]
        )
    )
    partner = sign_up()

    # When a partner streams a completion
    parsed = chunks(stream_chat(partner.api_key_id))

    # Then each piece is a delta.tool_calls item in OpenAI's shape, and the reported usage is charged
    deltas = [chunk["choices"][0]["delta"] for chunk in parsed[1:-1]]
    assert deltas == [
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]
    assert parsed[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert ledger(ai_stack, partner)["committed_tokens"] == 11


def test_a_provider_that_reports_no_usage_is_charged_the_text_it_generated(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    provider.append(ScriptedModel([TextDelta("one two"), TextDelta(" three"), StreamEnd("stop")]))
    partner = sign_up()

    parsed = chunks(stream_chat(partner.api_key_id, words=4, stream_options={"include_usage": True}))

    # prompt estimate 4 + 3 generated words, well under the reservation of 4 + 10
    assert parsed[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"]) == (7, 0)


def test_a_provider_failure_mid_stream_is_an_error_frame_and_charges_what_was_sent(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    # Given a provider that is throttled after two words
    provider.append(ScriptedModel([TextDelta("one"), TextDelta(" two"), UpstreamThrottled(retry_after_seconds=3)]))
    partner = sign_up()

    # When a partner streams a completion
    answer = stream_chat(partner.api_key_id)

    # Then the stream ends with an error frame in OpenAI's error shape (no [DONE]), the status being already sent
    assert answer.status == HTTPStatus.OK
    events = answer.events()
    assert "[DONE]" not in events
    error = json.loads(events[-1])
    assert set(error) == {"error"}
    assert (error["error"]["type"], error["error"]["code"]) == ("rate_limit_error", "upstream_rate_limited")
    # And the prompt and the two words sent are charged, nothing stays reserved
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"]) == (6, 0)
    assert provider[0].closed


def test_a_client_that_goes_away_stops_the_provider_and_is_charged_what_was_generated(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    # Given a provider that would write 50 words, 20 ms apart
    provider.append(ScriptedModel([TextDelta(f" w{index}") for index in range(50)] + [StreamEnd("stop")], 0.02))
    partner = sign_up()

    # When the client reads the role chunk and one content chunk, then disconnects
    answer = stream_chat(partner.api_key_id, words=4, max_tokens=100, disconnect_after=2)

    # Then the provider's stream was closed, nothing stays reserved, and the charge is at least the prompt
    # and at most the reservation (4 + 100)
    assert len(answer.events()) == 2
    assert provider[0].closed
    counters = ledger(ai_stack, partner)
    assert counters["reserved_tokens"] == 0
    assert 4 < counters["committed_tokens"] < 4 + 50


def test_a_stream_near_the_functions_deadline_ends_with_an_error_frame_and_settles(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    # Given a provider that writes a word a second, and a function with 1.5 s left after the stream's margin
    provider.append(ScriptedModel([TextDelta(f" w{index}") for index in range(20)] + [StreamEnd("stop")], 1.0))
    partner = sign_up()
    remaining_ms = int((STREAM_END_MARGIN_SECONDS + 1.5) * 1000)

    # When a partner streams a completion
    answer = stream_chat(partner.api_key_id, words=4, max_tokens=100, remaining_ms=remaining_ms)

    # Then the stream ends before the deadline with a timeout error frame, and the words sent are charged
    error = json.loads(answer.events()[-1])
    assert (error["error"]["type"], error["error"]["code"]) == ("server_error", "upstream_timeout")
    assert "time limit" in error["error"]["message"]
    counters = ledger(ai_stack, partner)
    assert counters["reserved_tokens"] == 0
    assert 4 < counters["committed_tokens"] <= 4 + 2


def test_a_settlement_that_fails_once_still_leaves_nothing_reserved(ai_stack: ProvisionedStack) -> None:
    # Given a streamed completion admitted and read to its end
    partner = sign_up()
    api = chat_api()
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "a b c"}], "stream": True})
    stream = open_stream(api, api.caller(partner.api_key_id), body, seconds_left=60)
    while stream.next_event() is not None:
        pass

    # When DynamoDB throttles the settlement once
    table_events = api._ledger._client.meta.events  # type: ignore[attr-defined]
    with fails_once("dynamodb", "UpdateItem", "ProvisionedThroughputExceededException", events=table_events) as calls:
        usage = stream.finish("completed")

    # Then the settlement was made again: the usage is charged once and nothing stays reserved
    assert calls() == 1
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"]) == (
        usage.prompt_tokens + usage.completion_tokens,
        0,
    )
    assert counters["committed_tokens"] == 6


def test_an_estimate_above_the_reservation_is_charged_the_reservation(
    ai_stack: ProvisionedStack, provider: list[ScriptedModel]
) -> None:
    # Given a provider that reports no usage and writes more words than max_tokens (as a real model's text
    # may count above its limit by our estimate)
    provider.append(ScriptedModel([TextDelta(" w" * 30), StreamEnd("length")]))
    partner = sign_up()

    # When a partner streams with max_tokens 10 (4 + 10 reserved)
    parsed = chunks(stream_chat(partner.api_key_id, words=4, max_tokens=10, stream_options={"include_usage": True}))

    # Then the charge is the reservation, never more
    assert parsed[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 10, "total_tokens": 14}
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"]) == (14, 0)


def test_a_stream_carries_the_rate_limit_headers_of_its_reservation(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (1000 requests, 200 tokens a day) that made one buffered completion (4 + 4 tokens)
    partner = sign_up()
    chat(partner.api_key_id, words=4, max_tokens=10)

    # When it streams a request that reserves 4 + 10 tokens
    answer = stream_chat(partner.api_key_id)

    # Then the headers, sent before the first byte, count this request and hold its whole reservation
    assert answer.status == HTTPStatus.OK
    assert answer.headers["x-ratelimit-remaining-requests"] == "998"
    assert answer.headers["x-ratelimit-limit-tokens"] == "200"
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(200 - 8 - 14)


def test_each_invocation_is_traced_under_its_own_x_ray_trace(
    ai_stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the X-Ray SDK finds an invocation's segment in _X_AMZN_TRACE_ID, which Lambda sets for a handler but
    # not for a web app the adapter started once; and a partner
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    partner = sign_up()
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}
    traced = "Root=1-6751a9f0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"

    # When an invocation comes with its trace id in the adapter's Lambda context, then one without
    first = invoke(chat_completions.app, event("chat_completions.json", partner.api_key_id, body), trace_id=traced)
    seen_first = os.environ.get("_X_AMZN_TRACE_ID")
    second = invoke(chat_completions.app, event("chat_completions.json", partner.api_key_id, body))

    # Then the first ran under its trace (the botocore subsegments join it), the second under none
    assert (first.status, second.status) == (HTTPStatus.OK, HTTPStatus.OK)
    assert seen_first == traced
    assert "_X_AMZN_TRACE_ID" not in os.environ
