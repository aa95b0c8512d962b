"""The Lambda Web Adapter, in-process, for tests of an ASGI function: an API Gateway proxy event becomes the HTTP
request the adapter sends the app (the event's method, path, query, headers and body, plus API Gateway's
request context in `x-amzn-request-context` and Lambda's context in `x-amzn-lambda-context`), and the app's
answer comes back with its body chunks as sent. A client that goes away is played by `disconnect_after`."""

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

AsgiApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]


@dataclass
class AppAnswer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def events(self) -> list[str]:
        """The `data:` payloads of a server-sent event stream, in order."""
        return [line.removeprefix("data: ") for line in self.text.split("\n\n") if line.startswith("data: ")]


def lambda_context(
    remaining_ms: int, request_id: str = "lambda-request-1", trace_id: str | None = None
) -> dict[str, Any]:
    """Lambda's context as the adapter serializes it (lambda_runtime's Context; `deadline` in ms since the epoch)."""
    return {
        "request_id": request_id,
        "deadline": int(time.time() * 1000) + remaining_ms,
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:ChatCompletionsFunction",
        "xray_trace_id": trace_id,
        "client_context": None,
        "identity": None,
        "env_config": {"function_name": "ChatCompletionsFunction", "memory": 512, "version": "$LATEST"},
    }


def request_scope(
    event: dict[str, Any], remaining_ms: int, trace_id: str | None = None
) -> tuple[dict[str, Any], bytes]:
    """The HTTP request (as an ASGI scope) and body the adapter makes of an API Gateway REST proxy event."""
    headers = {name.lower(): values[-1] for name, values in (event.get("multiValueHeaders") or {}).items()}
    headers.update({name.lower(): value for name, value in (event.get("headers") or {}).items()})
    # API Gateway received the request just now (a sample event's time is long past).
    request_context = {**event["requestContext"], "requestTimeEpoch": int(time.time() * 1000)}
    headers["x-amzn-request-context"] = json.dumps(request_context)
    headers["x-amzn-lambda-context"] = json.dumps(lambda_context(remaining_ms, trace_id=trace_id))
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    query = urllib.parse.urlencode(event.get("queryStringParameters") or {})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": event["httpMethod"],
        "scheme": "http",
        "path": event["path"],
        "raw_path": event["path"].encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    return scope, raw


async def invoke_async(
    app: AsgiApp,
    event: dict[str, Any],
    remaining_ms: int = 900_000,
    disconnect_after: int | None = None,
    trace_id: str | None = None,
) -> AppAnswer:
    """Send the event to the app; with `disconnect_after`, the client goes away after that many body chunks;
    `trace_id` is the invocation's X-Ray trace header, as Lambda gives it."""
    scope, body = request_scope(event, remaining_ms, trace_id)
    answer = AppAnswer()
    gone = asyncio.Event()
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            return  # as uvicorn does: what is sent after a disconnect goes nowhere
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {name.decode(): value.decode() for name, value in message["headers"]}
            return
        if message.get("body"):
            answer.chunks.append(message["body"])
        complete = not message.get("more_body", False)
        if complete or (disconnect_after is not None and len(answer.chunks) >= disconnect_after):
            gone.set()

    await app(scope, receive, send)
    return answer


def invoke(
    app: AsgiApp,
    event: dict[str, Any],
    remaining_ms: int = 900_000,
    disconnect_after: int | None = None,
    trace_id: str | None = None,
) -> AppAnswer:
    return asyncio.run(invoke_async(app, event, remaining_ms, disconnect_after, trace_id))


def as_lambda_handler(app: AsgiApp) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The app behind the adapter, called like a buffered Lambda handler: the proxy result it amounts to."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answer = invoke(app, event, context.get_remaining_time_in_millis())
        return {"statusCode": answer.status, "headers": answer.headers, "body": answer.text}

    return handler
