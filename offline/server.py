"""The HTTP front of the offline stack: the API stages at /<stage>/..., and a control endpoint for this
machine's tools at /__offline/... (stage names cannot collide: the stack refuses a stage named so).
A streaming route's answer is written as it comes, with HTTP/1.1 chunked transfer."""

import json
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from offline.events import IncomingRequest
from offline.gateway import GatewayResult, LocalGateway

CONTROL_PREFIX = "__offline"
# API Gateway's hard limit on a REST API request's payload.
MAX_BODY_BYTES = 10 * 1024 * 1024
JSON = [("Content-Type", "application/json")]
# Headers about the connection and the body's framing, which this server writes itself.
FRAMING_HEADERS = ("content-length", "transfer-encoding", "connection")

# What the control endpoint can do: (verb, name, JSON body) -> (status, JSON answer).
ControlHandler = Callable[[str, str, Any], tuple[int, Any]]


class GatewayServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server (keep-alive) bound to one local address."""

    daemon_threads = True
    # Refuse, rather than share, a port another process already listens on.
    allow_reuse_address = False
    # socketserver's default backlog of 5 resets connections in a burst; the kernel caps this at somaxconn.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        gateway: LocalGateway | None = None,
        control: ControlHandler | None = None,
        access_log: bool = True,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.gateway = gateway
        self.control = control
        self.access_log = access_log
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall start-up offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="offline-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits for serve_forever to notice, so it would hang on a server never started.
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "offline-apigateway"
    # One write per response and no Nagle delay: keep-alive clients would otherwise wait ~40 ms per answer.
    disable_nagle_algorithm = True
    server: GatewayServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # never a dropped connection: an answer, and the cause on the console
            print(f"offline: {self.command} {self.path} failed: {exc!r}", file=sys.stderr, flush=True)
            self.close_connection = True
            self._send(500, JSON, b'{"message":"Internal server error"}')

    def _serve(self) -> None:
        started = time.perf_counter()
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        stage, _, rest = url.path.removeprefix("/").partition("/")
        if stage == CONTROL_PREFIX:
            self._control(rest, body)
            return
        gateway = self.server.gateway
        if gateway is None:
            self._send(503, [("Content-Type", "application/json")], b'{"message":"starting"}')
            return
        request = IncomingRequest(
            method=self.command,
            path="/" + rest,
            query=parse_qsl(url.query, keep_blank_values=True),
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", f"127.0.0.1:{self.server.port}"),
        )
        result = gateway.handle(stage, request, _ChunkedAnswer(self))
        if not result.streamed:
            self._send(result.status, result.headers, result.body)
        if self.server.access_log:
            _log_access(self.command, url.path, result, (time.perf_counter() - started) * 1000)

    def _read_body(self) -> bytes | None:
        """The body, or None once a refusal was sent (the connection then closes: the body's end is unknown)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse_body(411, b'{"message":"Content-Length required"}')
            return None
        declared = self.headers.get_all("Content-Length") or []
        if len(set(declared)) > 1 or not all(value.strip().isdigit() for value in declared):
            # Malformed framing: API Gateway's front answers 400 before any route or function.
            self._refuse_body(400, b'{"message":"Bad Request"}')
            return None
        length = int(declared[0]) if declared else 0
        if length > MAX_BODY_BYTES:
            self._refuse_body(413, b'{"message":"Request Too Long"}')
            return None
        return self.rfile.read(length) if length else b""

    def _refuse_body(self, status: int, answer: bytes) -> None:
        self.close_connection = True
        self._send(status, JSON, answer)
        if self.server.access_log:
            print(f"{self.command} {urlsplit(self.path).path} {status} (refused before routing)", file=sys.stderr)

    def _control(self, rest: str, body: bytes) -> None:
        verb, _, name = rest.partition("/")
        control = self.server.control
        if control is None:
            status, answer = 404, {"message": "no control endpoint"}
        else:
            try:
                payload = json.loads(body) if body else None
            except (ValueError, RecursionError):
                status, answer = 400, {"message": "the body must be JSON"}
            else:
                status, answer = control(verb, unquote(name), payload)
        self._send(status, [("Content-Type", "application/json")], json.dumps(answer, default=str).encode())

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        head = self.head(status, headers, f"Content-Length: {len(body)}")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def head(self, status: int, headers: list[tuple[str, str]], framing: str | None) -> bytes:
        """The status line and headers, with this server's own framing header (if any), Date and Connection."""
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in FRAMING_HEADERS]
        lines += [framing] if framing else []
        if not any(name.lower() == "date" for name, _ in headers):  # a web app sets its own
            lines.append(f"Date: {self.date_time_string()}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request line; the gateway writes its own access log."""


class _ChunkedAnswer:
    """offline.gateway's ResponseSink for one request: the answer with `Transfer-Encoding: chunked`, each
    piece written (and so sent: the socket writer does not buffer) as soon as the function produced it. An
    HTTP/1.0 client, which knows no chunks, gets the body as it comes and its end when the connection closes."""

    def __init__(self, handler: _RequestHandler) -> None:
        self._handler = handler
        self._chunked = handler.request_version != "HTTP/1.0"

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        if not self._chunked:
            self._handler.close_connection = True
        framing = "Transfer-Encoding: chunked" if self._chunked else None
        self._handler.wfile.write(self._handler.head(status, headers, framing))

    def write(self, chunk: bytes) -> None:
        if chunk and self._handler.command != "HEAD":
            self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk)

    def end(self) -> None:
        if self._handler.command != "HEAD" and self._chunked:
            try:
                self._handler.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client left just before the end
                self._handler.close_connection = True

    def cut(self) -> None:
        # No last chunk: the client sees the body end early, and the connection closes.
        self._handler.close_connection = True


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("",))[0]


def _log_access(method: str, path: str, result: GatewayResult, elapsed_ms: float) -> None:
    # Like the template's access log: never a key value, only its id.
    target = result.route.function_id if result.route else "-"
    refusal = f" {result.error_type}" if result.error_type else ""
    key = f" key={result.api_key_id}" if result.api_key_id else ""
    line = f"{method} {path} {result.status}{refusal} -> {target}{key} {elapsed_ms:.1f} ms"
    if result.detail:
        line += "\n  " + result.detail.replace("\n", "\n  ")
    print(line, file=sys.stderr, flush=True)
