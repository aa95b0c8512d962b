"""A fake OpenAI-compatible upstream on 127.0.0.1, for the openai-compatible provider's tests.

It keeps the contract OpenAI documents for `POST /v1/chat/completions` (API reference, "Create chat
completion" and "Error codes"): a JSON chat.completion object with choices[].message and usage, or an error
status with `{"error": {"message", "type", "param", "code"}}`, and Retry-After on 429. A test scripts what
the next answers are (`then_answer`, `then_hang`) and reads what was received (`requests`).
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
        self.base_url = ""

    def then_answer(self, status: int, body: Any, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self._lock:
            self._script.append(Scripted(status, body, headers or {}, delay))

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
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
