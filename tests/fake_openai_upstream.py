"""A fake OpenAI-compatible upstream on 127.0.0.1, for the openai-compatible provider's tests.

It keeps the contract OpenAI documents for `POST /v1/chat/completions` (API reference, "Create chat
completion", "The chat completion chunk object" and "Error codes"): a JSON chat.completion object with
choices[].message and usage, or an error status with `{"error": {"message", "type", "param", "code"}}`, and
Retry-After on 429; streamed (`then_stream`), server-sent events over chunked transfer, each
`data: <chat.completion.chunk>` flushed as it is written, then `data: [DONE]`. A test scripts what the next
answers are and reads what was received (`requests`).
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    events: list[Any] | None = None  # a stream: each a chunk object, or raw bytes sent as they are
    event_delay_seconds: float = 0.0
    pause_after: int | None = None  # send this many events, then wait for `resume_stream()`


def chunk(
    content: str | None = None,
    finish: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk with one choice, as OpenAI streams it (`usage` null in every choice chunk)."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        "usage": None,
    }


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The extra last chunk of `stream_options.include_usage`: no choices, the whole call's usage."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return {**chunk(), "choices": [], "usage": usage}


def chat_completion(content: str, prompt_tokens: int, completion_tokens: int, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, error_type: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._resume = threading.Event()
        self.base_url = ""

    def then_answer(self, status: int, body: Any, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self._lock:
            self._script.append(Scripted(status, body, headers or {}, delay))

    def then_stream(
        self, events: list[Any], delay_between: float = 0.0, done: bool = True, pause_after: int | None = None
    ) -> None:
        """Answer 200 with these server-sent events (and `[DONE]` after them unless `done` is False)."""
        sent = [*events, b"data: [DONE]\n\n"] if done else list(events)
        with self._lock:
            self._script.append(
                Scripted(200, None, events=sent, event_delay_seconds=delay_between, pause_after=pause_after)
            )

    def resume_stream(self) -> None:
        self._resume.set()

    def paused(self) -> None:
        self._resume.wait(10)

    def next_answer(self) -> Scripted:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return Scripted(200, chat_completion("default answer", 1, 2))

    def release(self) -> None:
        self._release.set()

    def wait(self, seconds: float) -> None:
        # Answers late without holding the server: the client gave up long before, the test ends at once.
        self._release.wait(seconds)


def _handler(upstream: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            upstream.requests.append(
                Received(self.path, {name.lower(): value for name, value in self.headers.items()}, json.loads(raw))
            )
            answer = upstream.next_answer()
            if answer.delay_seconds:
                upstream.wait(answer.delay_seconds)
            if answer.events is not None:
                self._stream(answer)
                return
            payload = json.dumps(answer.body).encode() if not isinstance(answer.body, bytes) else answer.body
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def _stream(self, answer: Scripted) -> None:
            self.protocol_version = "HTTP/1.1"  # chunked transfer, as OpenAI streams
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                for index, event in enumerate(answer.events or ()):
                    if index and answer.event_delay_seconds:
                        upstream.wait(answer.event_delay_seconds)
                    if index == answer.pause_after:
                        upstream.paused()
                    data = event if isinstance(event, bytes) else f"data: {json.dumps(event)}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client closed the stream

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    server.daemon_threads = True
    upstream.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.release()
        upstream.resume_stream()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
