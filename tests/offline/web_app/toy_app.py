"""A toy ASGI app behind the offline Lambda Web Adapter, for the offline stack's streaming tests: it streams
numbered chunks with a delay, echoes what the adapter sent it, sleeps, or exits, and notes in the file named by
TOY_APP_EVENTS when a stream ended and how (completed, or the client disconnected)."""

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = await _body(receive)
    query = parse_qs(scope["query_string"].decode())
    path = scope["path"]
    if path == "/healthz":
        await _answer(send, 200, b"ok")
    elif path == "/v1/stream":
        await _stream(scope, receive, send, query)
    elif path == "/v1/echo":
        await _answer(send, 200, json.dumps(_echo(scope, body)).encode(), "application/json")
    elif path == "/v1/exit":
        os._exit(3)
    elif path == "/v1/sleep":
        await asyncio.sleep(float(query.get("seconds", ["0"])[0]))
        await _answer(send, 200, b"slept")
    else:
        await _answer(send, 404, b"not found")


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Send, status: int, body: bytes, content_type: str = "text/plain") -> None:
    headers = [(b"content-type", content_type.encode()), (b"x-app-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(scope: dict[str, Any], receive: Receive, send: Send, query: dict[str, list[str]]) -> None:
    """`chunks` numbered server-sent events, `delay` seconds apart, then a sleep of `hold` seconds before the end;
    the process exits after event number `exit_after`."""
    chunks, delay = int(query.get("chunks", ["3"])[0]), float(query.get("delay", ["0"])[0])
    hold = float(query.get("hold", ["0"])[0])
    exit_after = int(query.get("exit_after", ["-1"])[0])
    request_id = json.loads(_header(scope, "x-amzn-request-context") or "{}").get("requestId")
    disconnected = asyncio.Event()

    async def listen() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    listener = asyncio.create_task(listen())
    headers = [(b"content-type", b"text/event-stream"), (b"x-app-pid", str(os.getpid()).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for number in range(chunks):
        if number and await _disconnected_within(disconnected, delay):
            break
        await send({"type": "http.response.body", "body": f"data: {number}\n\n".encode(), "more_body": True})
        if number == exit_after:
            await asyncio.sleep(0.2)  # let the event reach the client first
            os._exit(4)
    if not disconnected.is_set() and not await _disconnected_within(disconnected, hold):
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
    _note("disconnected" if disconnected.is_set() else "completed", request_id)
    listener.cancel()


async def _disconnected_within(disconnected: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(disconnected.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _echo(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    return {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query_string": scope["query_string"].decode(),
        "headers": headers,
        "body": base64.b64encode(body).decode(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }


def _header(scope: dict[str, Any], name: str) -> str | None:
    return next((value.decode() for key, value in scope["headers"] if key.decode() == name), None)


def _note(outcome: str, request_id: str | None) -> None:
    path = os.environ.get("TOY_APP_EVENTS")
    if path:
        with open(path, "a") as events:
            events.write(json.dumps({"outcome": outcome, "request_id": request_id, "pid": os.getpid()}) + "\n")
