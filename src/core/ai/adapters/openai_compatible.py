"""Adapter for any OpenAI-compatible upstream (OpenAI, vLLM, LiteLLM, Ollama...): `POST {base}/chat/completions`
over a pooled urllib3 connection (the ModelProvider port).

Tools, tool_choice, parallel_tool_calls, response_format, tool calls and results and images (as data: URLs)
are passed through in OpenAI's shape. Streamed, the upstream is asked for `stream: true` with
`stream_options.include_usage` (so its last chunk carries the usage) and its server-sent events are read as
they arrive.

The upstream's own errors map to the domain's: its 400/413/422 are the caller's request (400), its 429 is
throttling (429, Retry-After kept), a timeout is 504, and anything else (our key refused, a model id the
upstream does not know, its 5xx, a body we cannot read) is 502; an error frame inside a stream is throttling
when OpenAI's error says rate limit, a failure otherwise. Without a usage object in the answer, the call is
charged at the prompt estimate plus 1 token per 3 bytes of reply, at most max_tokens.
"""

import json
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from core.ai.chat import (
    ChatTurn,
    FinishReason,
    ForcedTool,
    ModelReply,
    ModelRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    estimate_completion_tokens,
    estimate_prompt_tokens,
)
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

CONNECT_TIMEOUT_SECONDS = 3.0
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
# OpenAI's error types and codes for throttling, in an error frame of a stream.
_RATE_LIMITED = {"rate_limit_exceeded", "rate_limit_error", "requests", "tokens"}
_REJECTED = {400, 413, 422}
_TIMED_OUT = {408, 504}


class OpenAICompatible:
    """The ModelProvider port on an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str | None] = lambda: None,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._api_key = api_key
        # Kept across invocations of a warm function: one TLS handshake, not one per request.
        self._pool = pool or urllib3.PoolManager(retries=False, maxsize=4)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return estimate_prompt_tokens(request)

    def estimate_completion_tokens(self, text: str) -> int:
        return estimate_completion_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Generator[StreamEvent]:
        response = self._post(chat_request(request, stream=True), timeout_seconds, stream=True)
        finished = False
        try:
            yield from _stream_events(_sse_data(response), request)
            response.drain_conn()  # the rest after [DONE] is the body's end: the connection can be reused
            finished = True
        except TimeoutError as exc:
            raise UpstreamTimedOut(timeout_seconds) from exc
        except HTTPError as exc:
            raise UpstreamFailed(f"the upstream's stream broke: {type(exc).__name__}") from exc
        finally:
            if not finished:
                response.close()  # half read (the caller went away, or an error): never back to the pool
            response.release_conn()

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        started = time.perf_counter()
        response = self._post(chat_request(request), timeout_seconds, stream=False)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            answer = json.loads(response.data)
            return reply_from_chat(answer, request, latency_ms)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamFailed("the upstream answered with a body that is not a chat completion") from exc

    def _post(self, body: dict[str, Any], timeout_seconds: float, stream: bool) -> urllib3.BaseHTTPResponse:
        return post_json(self._pool, self._url, self._api_key(), body, timeout_seconds, stream=stream)


def post_json(
    pool: urllib3.PoolManager,
    url: str,
    api_key: str | None,
    body: dict[str, Any],
    timeout_seconds: float,
    *,
    stream: bool = False,
) -> urllib3.BaseHTTPResponse:
    """POST a JSON body to an OpenAI-compatible upstream: its 200 answer (the body not read yet when streaming),
    or the domain's error for a connection failure, a timeout or another status."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connect = min(CONNECT_TIMEOUT_SECONDS, timeout_seconds)
    # A stream's timeout bounds each wait for more of it (the port's contract), not the whole stream.
    timeout = (
        urllib3.Timeout(connect=connect, read=timeout_seconds)
        if stream
        else urllib3.Timeout(total=timeout_seconds, connect=connect)
    )
    try:
        response = pool.request(
            "POST",
            url,
            body=json.dumps(body).encode(),
            headers=headers,
            timeout=timeout,
            retries=False,
            redirect=False,
            preload_content=not stream,
        )
    except NewConnectionError as exc:  # before TimeoutError: urllib3 makes it a subclass of ConnectTimeoutError
        raise UpstreamFailed(f"the upstream could not be reached: {type(exc).__name__}") from exc
    except TimeoutError as exc:
        raise UpstreamTimedOut(timeout_seconds) from exc
    except HTTPError as exc:
        raise UpstreamFailed(f"the upstream could not be reached: {type(exc).__name__}") from exc
    if response.status != 200:
        try:
            data = response.data
        except HTTPError:
            data = b""
        raise _upstream_error(response.status, data, response.headers.get("Retry-After"), timeout_seconds)
    return response


def chat_request(request: ModelRequest, stream: bool = False) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": text} for text in request.system]
    messages += [_message(turn) for turn in request.turns]
    # max_tokens, not max_completion_tokens: every compatible server knows the older name.
    body: dict[str, Any] = {
        "model": request.provider_model_id,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}  # the usage we charge comes in the last chunk
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    body.update(_tool_fields(request))
    json_output = request.response_format
    if json_output is not None and json_output.schema is None:
        body["response_format"] = {"type": "json_object"}
    elif json_output is not None:
        json_schema: dict[str, Any] = {"name": json_output.name or "response", "schema": json_output.schema}
        json_schema.update(
            {
                name: value
                for name, value in (("description", json_output.description), ("strict", json_output.strict))
                if value is not None
            }
        )
        body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    return body


def _message(turn: ChatTurn) -> dict[str, Any]:
    if turn.role == "tool":
        return {"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.text}
    if turn.tool_calls:
        return {
            "role": "assistant",
            "content": turn.text or None,
            "tool_calls": [call.body() for call in turn.tool_calls],
        }
    if turn.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
        for image in turn.images:
            image_url = {"url": image.data_url(), **({"detail": image.detail} if image.detail else {})}
            parts.append({"type": "image_url", "image_url": image_url})
        return {"role": turn.role, "content": parts}
    return {"role": turn.role, "content": turn.text}


def _tool_fields(request: ModelRequest) -> dict[str, Any]:
    """tools, tool_choice and parallel_tool_calls; the last two only with tools (OpenAI refuses them alone)."""
    if not request.tools:
        return {}
    tools = []
    for tool in request.tools:
        function: dict[str, Any] = {"name": tool.name}
        for name, value in (
            ("description", tool.description),
            ("parameters", tool.parameters),
            ("strict", tool.strict),
        ):
            if value is not None:
                function[name] = value
        tools.append({"type": "function", "function": function})
    fields: dict[str, Any] = {"tools": tools}
    if isinstance(request.tool_choice, ForcedTool):
        fields["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice.name}}
    elif request.tool_choice is not None:
        fields["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def reply_from_chat(answer: dict[str, Any], request: ModelRequest, latency_ms: float) -> ModelReply:
    choice = answer["choices"][0]
    text = choice["message"].get("content") or ""
    if not isinstance(text, str):
        raise TypeError("message.content is not a string")
    calls = tuple(
        ToolCall(str(call["id"]), str(call["function"]["name"]), str(call["function"].get("arguments") or "{}"))
        for call in choice["message"].get("tool_calls") or ()
    )
    usage = answer.get("usage") or {}
    if "prompt_tokens" in usage and "completion_tokens" in usage:
        prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    else:
        prompt_tokens = estimate_prompt_tokens(request)
        written = text + "".join(call.name + call.arguments for call in calls)
        completion_tokens = min(request.max_tokens, estimate_completion_tokens(written))
    return ModelReply(
        text=text,
        finish_reason=_FINISH_REASONS.get(str(choice.get("finish_reason")), "stop"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        tool_calls=calls,
    )


def _sse_data(response: urllib3.BaseHTTPResponse) -> Iterator[str]:
    """The `data` of each server-sent event, as soon as its blank line has arrived."""
    pending, data = b"", list[str]()
    while chunk := response.read1(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in (line.rstrip(b"\r") for line in lines):
            if not line and data:
                yield "\n".join(data)
                data = []
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" ").decode())
    if pending.startswith(b"data:"):
        data.append(pending[5:].removeprefix(b" ").decode())
    if data:
        yield "\n".join(data)


def _stream_events(datas: Iterator[str], request: ModelRequest) -> Iterator[StreamEvent]:
    """OpenAI's chat.completion.chunk objects as the port's events, up to `[DONE]`."""
    finish_reason: FinishReason | None = None
    usage: dict[str, Any] = {}
    for data in datas:
        if data.strip() == "[DONE]":
            break
        chunk = _chunk(data)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                yield TextDelta(str(delta["content"]))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                arguments = str(function.get("arguments") or "")
                yield ToolCallDelta(int(call.get("index", 0)), arguments, call.get("id"), function.get("name"))
            if choice.get("finish_reason"):
                finish_reason = _FINISH_REASONS.get(str(choice["finish_reason"]), "stop")
    else:
        if finish_reason is None:
            raise UpstreamFailed("the upstream's stream ended before its last chunk")
    if "prompt_tokens" in usage and "completion_tokens" in usage:
        yield StreamEnd(finish_reason or "stop", int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
    else:
        yield StreamEnd(finish_reason or "stop")


def _chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UpstreamFailed("the upstream streamed something that is not a chat.completion.chunk") from exc
    if not isinstance(chunk, dict):
        raise UpstreamFailed("the upstream streamed something that is not a chat.completion.chunk")
    error = chunk.get("error")
    if isinstance(error, dict):
        if {error.get("type"), error.get("code")} & _RATE_LIMITED:
            raise UpstreamThrottled()
        raise UpstreamFailed(f"the upstream failed inside the stream: {str(error.get('message'))[:500]}")
    return chunk


def _upstream_error(status: int, body: bytes, retry_after: str | None, timeout_seconds: float) -> Exception:
    if status == 429:
        return UpstreamThrottled(_seconds(retry_after))
    if status in _TIMED_OUT:
        return UpstreamTimedOut(timeout_seconds)
    if status in _REJECTED:
        return UpstreamRejected(f"the model refused the request: {_error_message(body)}")
    return UpstreamFailed(f"the upstream answered {status}: {_error_message(body)}")


def _error_message(body: bytes) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "no error message"
    return str(message)[:500]


def _seconds(retry_after: str | None) -> int:
    try:
        return max(1, min(int(float(retry_after or "1")), 60))
    except ValueError:
        return 1
