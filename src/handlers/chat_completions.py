"""POST /v1/chat/completions: OpenAI's chat completions, buffered or streamed as server-sent events, served by
the deployment's model provider and metered in tokens against the tier's budget (key required; requests
metered by the usage plan).

A plain ASGI app (docs/decisions.md), run by uvicorn (src/run.sh) behind the Lambda Web Adapter, which sends
each invocation as an HTTP request carrying API Gateway's request context (`x-amzn-request-context`: the key
id, the request id) and Lambda's context (`x-amzn-lambda-context`: the deadline). The blocking work (DynamoDB,
the model) runs in worker threads; the event loop watches for the client going away and for the deadline.
Each invocation's X-Ray trace id also comes in Lambda's context, and is made the process's
`_X_AMZN_TRACE_ID` for it, as the Lambda runtime does for a handler: the X-Ray SDK's subsegments (AWS calls,
the provider's HTTP) then join the invocation's trace.
"""

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from core.ai.service import chat_api
from core.ai.streaming import (
    BUFFERED_SECONDS,
    STREAM_END_MARGIN_SECONDS,
    ChatStream,
    StreamEnding,
    open_stream,
    wants_stream,
)
from core.errors import DomainError, InvalidRequest, UpstreamFailed, UpstreamTimedOut
from core.observability import logger
from handlers.http_answers import OPENAI_INTERNAL_ERROR, OpenAIError, log_openai_refusal, openai_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROUTE = "/v1/chat/completions"
REFUSED, FAILED = "refused chat completion", "chat completion failed"
# API Gateway ends a streamed response 15 minutes after it received the request, whatever the function's timeout.
API_GATEWAY_STREAM_SECONDS = 900
# After the first byte the text sent so far is charged (core.ai.metering): a failure's answer must not say otherwise.
MID_STREAM_FAILURE = "the model provider failed during the stream; the text sent so far is charged"
STREAM_TIMED_OUT = "the reply did not finish within this API's time limit; the text sent so far is charged"
TIMED_OUT = UpstreamTimedOut(API_GATEWAY_STREAM_SECONDS)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        if scope["method"] == "GET" and scope["path"] == "/healthz":
            await _send_json(send, HTTPStatus.OK, {"status": "ok"}, {})
        elif scope["method"] == "POST" and scope["path"] == ROUTE:
            await _chat(scope, receive, send)
        else:
            body = {"error": {"message": "no such route", "type": "invalid_request_error", "param": None, "code": None}}
            await _send_json(send, HTTPStatus.NOT_FOUND, body, {})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Invocation:
    """What the Lambda Web Adapter passes on about one invocation."""

    def __init__(self, scope: Scope) -> None:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        request_context = _json_object(headers.get("x-amzn-request-context"))
        lambda_context = _json_object(headers.get("x-amzn-lambda-context"))
        identity = request_context.get("identity") or {}
        self.api_key_id: str | None = identity.get("apiKeyId") if isinstance(identity, dict) else None
        self.request_id = str(request_context.get("requestId") or "")
        self.deadline = _deadline(request_context, lambda_context)
        self.lambda_request_id = lambda_context.get("request_id")
        trace_id = lambda_context.get("xray_trace_id")
        self.trace_id = trace_id if isinstance(trace_id, str) and trace_id else None

    def join_trace(self) -> None:
        """Make this invocation's trace the X-Ray SDK's (it reads _X_AMZN_TRACE_ID at each AWS call). The adapter
        sends one invocation at a time per execution environment, so the process-wide variable is this one's."""
        if self.trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = self.trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)

    def seconds_left(self) -> float:
        return self.deadline - time.time()

    def response_headers(self) -> dict[str, str]:
        """The headers every served answer carries, buffered or streamed (besides its rate-limit headers)."""
        return {"x-request-id": self.request_id}


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _deadline(request_context: dict[str, Any], lambda_context: dict[str, Any]) -> float:
    """Seconds since the epoch when this invocation must have answered: Lambda's deadline, or API Gateway's
    15-minute cap of a stream if that comes first (without the adapter's context: the buffered 27 s)."""
    deadlines = [time.time() + BUFFERED_SECONDS]
    if isinstance(lambda_context.get("deadline"), int | float):
        deadlines = [lambda_context["deadline"] / 1000]
    if isinstance(request_context.get("requestTimeEpoch"), int | float):
        deadlines.append(request_context["requestTimeEpoch"] / 1000 + API_GATEWAY_STREAM_SECONDS)
    return min(deadlines)


async def _chat(scope: Scope, receive: Receive, send: Send) -> None:
    invocation = Invocation(scope)
    invocation.join_trace()
    logger.set_correlation_id(invocation.request_id)
    logger.append_keys(function_request_id=invocation.lambda_request_id)
    try:
        raw = await _read_body(receive)
        api = chat_api()
        caller = await asyncio.to_thread(api.caller, invocation.api_key_id)
        body = _text(raw)
        if wants_stream(body):
            stream = await asyncio.to_thread(open_stream, api, caller, body, invocation.seconds_left())
        else:
            seconds_left = min(invocation.seconds_left(), BUFFERED_SECONDS)
            completion = await asyncio.to_thread(api.complete, caller, body, seconds_left)
            await _send_json(send, HTTPStatus.OK, completion.body(), completion.headers | invocation.response_headers())
            return
    except DomainError as exc:
        error = openai_error(exc)
        log_openai_refusal(exc, error.status, REFUSED)
        await _send_json(send, error.status, error.body, error.headers)
        return
    except Exception:
        logger.exception(FAILED)
        await _send_json(send, OPENAI_INTERNAL_ERROR.status, OPENAI_INTERNAL_ERROR.body, {})
        return
    await _stream(stream, invocation, receive, send)


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return bytes(body)


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8") if raw else None
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not UTF-8 text") from exc


async def _stream(stream: ChatStream, invocation: Invocation, receive: Receive, send: Send) -> None:
    """Send the stream as OpenAI does (`data: <chunk>` events, then `data: [DONE]`) until it ends, the client
    goes away or the deadline comes; then settle it (in every case, exactly once). A stream that ends is settled
    before its last frame is sent, so a client that has read the end sees its tokens in the ledger."""
    disconnected = asyncio.ensure_future(_disconnect(receive))
    ending: StreamEnding = "disconnected"
    try:
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        await _start(send, HTTPStatus.OK, headers | stream.rate_limit_headers() | invocation.response_headers())
        await _event(send, stream.role_chunk())
        while True:
            pull = asyncio.ensure_future(asyncio.to_thread(stream.next_event))
            timeout = max(invocation.seconds_left() - STREAM_END_MARGIN_SECONDS, 0)
            done, _ = await asyncio.wait({pull, disconnected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if disconnected in done:
                ending = "disconnected"
                _forget(pull)
                return
            if pull not in done:
                ending = "timed_out"
                _forget(pull)
                logger.warning("stream reached its deadline", api_key_id=stream.admitted.caller.api_key_id)
                await asyncio.to_thread(stream.finish, ending)
                await _event(send, _with_message(openai_error(TIMED_OUT), STREAM_TIMED_OUT).body)
                return
            try:
                event = pull.result()
            except Exception as exc:
                ending = "failed"
                await asyncio.to_thread(stream.finish, ending)
                await _event(send, _mid_stream_error(exc).body)
                return
            if event is None:
                return
            await _event(send, stream.event_chunk(event))
            if stream.end is not None:
                ending = "completed"
                usage = await asyncio.to_thread(stream.finish, ending)
                if stream.include_usage:
                    await _event(send, stream.usage_chunk(usage))
                await _body(send, b"data: [DONE]\n\n")
                return
    finally:
        disconnected.cancel()
        await asyncio.to_thread(stream.finish, ending)
        await _body(send, b"", more=False)


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _forget(pull: "asyncio.Future[Any]") -> None:
    """A pull still running in its thread: its outcome is not wanted (ChatStream closes the provider after it)."""
    pull.add_done_callback(lambda done: done.cancelled() or done.exception())


def _mid_stream_error(exc: Exception) -> OpenAIError:
    if not isinstance(exc, DomainError):
        logger.exception(FAILED)
        return OPENAI_INTERNAL_ERROR
    error = openai_error(exc)
    log_openai_refusal(exc, error.status, REFUSED)
    return _with_message(error, MID_STREAM_FAILURE) if isinstance(exc, UpstreamFailed) else error


def _with_message(error: OpenAIError, message: str) -> OpenAIError:
    return OpenAIError(error.status, {"error": {**error.body["error"], "message": message}}, error.headers)


async def _send_json(send: Send, status: HTTPStatus, body: Any, headers: dict[str, str]) -> None:
    await _start(send, status, {"content-type": "application/json"} | headers)
    await _body(send, json.dumps(body).encode(), more=False)


async def _start(send: Send, status: HTTPStatus, headers: dict[str, str]) -> None:
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": int(status), "headers": encoded})


async def _event(send: Send, chunk: dict[str, Any]) -> None:
    await _body(send, b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")


async def _body(send: Send, data: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})
