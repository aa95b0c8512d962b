"""The Lambda Web Adapter (LWA) emulated inside a worker (offline.worker): it starts the function's web app,
waits for its readiness check, and turns each invocation's API Gateway REST event into an HTTP request to
the app, then passes the app's answer back: streamed (START, CHUNK... END) in `response_stream` mode, as
one proxy response otherwise.

What it copies is awslabs/aws-lambda-web-adapter 1.0 (src/lib.rs) and the lambda_http / lambda_runtime
crates it builds on (lambda-http/src/request.rs, lambda-runtime/src/requests.rs); each rule below names its
place there. Standard library only, like the worker.
"""

import base64
import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from offline.worker import CANCEL, CHUNK, END, ERROR, INVOKE, READY, START, read_frame, write_frame

# The content type and the delimiter of a streamed Lambda HTTP response: the metadata prelude (status,
# headers, cookies) as JSON, 8 NUL bytes, then the body (lambda-runtime/src/requests.rs, StreamingResponse).
STREAM_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
# lib.rs is_web_ready: a readiness check every 10 ms, a log line every 2 s while the app is not ready.
READINESS_INTERVAL_SECONDS = 0.01
NOT_READY_LOG_SECONDS = 2.0
# The largest piece of the app's body passed on at once; smaller pieces go as soon as they arrive.
READ_SIZE = 64 * 1024
# lambda-http/src/response.rs: a buffered body with one of these types is text, any other is base64.
TEXT_TYPES = ("text", "application/json", "application/javascript", "application/xml", "application/yaml")
TEXT_SUFFIXES = ("+xml", "+yaml", "+json")
# Headers LWA sets itself, replacing any the client sent (lib.rs fetch_response; "prevent spoofing", #286).
CONTEXT_HEADERS = ("x-amzn-request-context", "x-amzn-lambda-context")
# Framing of the request to the app is this adapter's own, not the client's.
FRAMING_HEADERS = ("content-length", "transfer-encoding", "connection")

# Writes one frame of the worker protocol (offline.worker) to the parent.
Frame = Callable[[bytes, bytes], None]


@dataclass(frozen=True)
class AdapterOptions:
    """LWA's settings, read from the function's environment as lib.rs `AdapterOptions::default` reads them."""

    host: str
    port: int
    readiness_port: int
    readiness_path: str
    readiness_tcp: bool
    healthy_statuses: frozenset[int]
    response_stream: bool
    base_path: str | None = None
    authorization_source: str | None = None

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> "AdapterOptions":
        port = environ.get("AWS_LWA_PORT") or environ.get("PORT") or "8080"
        healthy = environ.get("AWS_LWA_READINESS_CHECK_HEALTHY_STATUS")
        return cls(
            host=environ.get("AWS_LWA_HOST", "127.0.0.1"),
            port=int(port),
            readiness_port=int(environ.get("AWS_LWA_READINESS_CHECK_PORT") or port),
            readiness_path=environ.get("AWS_LWA_READINESS_CHECK_PATH", "/"),
            readiness_tcp=environ.get("AWS_LWA_READINESS_CHECK_PROTOCOL", "http").lower() == "tcp",
            healthy_statuses=parse_statuses(healthy) if healthy is not None else frozenset(range(100, 500)),
            # Anything but response_stream (case-insensitive) is buffered, LWA's default.
            response_stream=environ.get("AWS_LWA_INVOKE_MODE", "buffered").lower() == "response_stream",
            base_path=environ.get("AWS_LWA_REMOVE_BASE_PATH"),
            authorization_source=environ.get("AWS_LWA_AUTHORIZATION_SOURCE"),
        )


def parse_statuses(text: str) -> frozenset[int]:
    """`200-399,404` as lib.rs parse_status_codes reads it; unreadable parts are skipped."""
    statuses: set[int] = set()
    for part in (item.strip() for item in text.split(",")):
        low, dash, high = part.partition("-")
        with contextlib.suppress(ValueError):
            statuses.update(range(int(low), int(high) + 1) if dash else [int(part)])
    return frozenset(statuses)


def app_request(
    event: dict[str, Any], options: AdapterOptions, lambda_context: dict[str, Any]
) -> tuple[str, str, list[tuple[str, bytes]], bytes]:
    """Method, target, headers and body of the HTTP request LWA sends the app for a REST proxy event."""
    # The event's path without the stage (lambda_http's RawHttpPath), minus AWS_LWA_REMOVE_BASE_PATH, encoded
    # as the url crate's set_path encodes it.
    path = event.get("path") or "/"
    if options.base_path:
        path = path.removeprefix(options.base_path)
    target = quote(path, safe="/:@!$&'()*+,;=-._~%")
    # Multi-value parameters are preferred, form-encoded (request.rs build_request_uri, QueryMap).
    multi = event.get("multiValueQueryStringParameters") or {}
    single = event.get("queryStringParameters") or {}
    pairs = [(name, value) for name, values in multi.items() for value in values] or list(single.items())
    if pairs:
        target += "?" + urlencode(pairs)
    headers = _request_headers(event)
    if options.authorization_source and options.authorization_source.lower() in headers:
        headers["authorization"] = headers.pop(options.authorization_source.lower())
    headers.setdefault("host", [f"{options.host}:{options.port}"])
    context = request_context(event.get("requestContext") or {})
    sent = [(name, value.encode("latin-1", "replace")) for name, values in headers.items() for value in values]
    sent.append(("x-amzn-request-context", _compact_json(context)))
    sent.append(("x-amzn-lambda-context", _compact_json(lambda_context)))
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    return str(event.get("httpMethod") or "GET"), target, sent, raw


def _request_headers(event: dict[str, Any]) -> dict[str, list[str]]:
    # request.rs into_proxy_request: multiValueHeaders extended by headers, and http's HeaderMap::extend
    # replaces a name's values, so a repeated header reaches the app once, with its last value. Names are
    # lower case, as HeaderMap keeps them.
    headers: dict[str, list[str]] = {}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), []).extend(values)
    for name, value in (event.get("headers") or {}).items():
        headers[name.lower()] = [value]
    for name in (*CONTEXT_HEADERS, *FRAMING_HEADERS):
        headers.pop(name, None)
    return headers


def request_context(context: dict[str, Any]) -> dict[str, Any]:
    """The event's requestContext as LWA re-serializes it (aws_lambda_events ApiGatewayProxyRequestContext):
    these fields in this order, absent ones null, `operationName` and an empty `authorizer` left out."""
    identity = context.get("identity") or {}
    shaped: dict[str, Any] = {name: context.get(name) for name in ("accountId", "resourceId")}
    if context.get("operationName") is not None:
        shaped["operationName"] = context["operationName"]
    shaped.update({name: context.get(name) for name in ("stage", "domainName", "domainPrefix", "requestId")})
    shaped["protocol"] = context.get("protocol")
    shaped["identity"] = {name: identity.get(name) for name in IDENTITY_FIELDS}
    shaped["resourcePath"] = context.get("resourcePath")
    shaped["path"] = context.get("path")
    if context.get("authorizer"):
        shaped["authorizer"] = context["authorizer"]
    shaped["httpMethod"] = context.get("httpMethod")
    shaped["requestTime"] = context.get("requestTime")
    shaped["requestTimeEpoch"] = context.get("requestTimeEpoch") or 0
    shaped["apiId"] = context.get("apiId")
    return shaped


IDENTITY_FIELDS = (
    "cognitoIdentityPoolId",
    "accountId",
    "cognitoIdentityId",
    "caller",
    "apiKey",
    "apiKeyId",
    "accessKey",
    "sourceIp",
    "cognitoAuthenticationType",
    "cognitoAuthenticationProvider",
    "userArn",
    "userAgent",
    "user",
)


def lambda_context(function: dict[str, Any], request_id: str, deadline: float) -> dict[str, Any]:
    """lambda_runtime's Context as serde writes it (lambda-runtime/src/types.rs): `deadline` in ms since the
    epoch, the function's configuration under `env_config`."""
    return {
        "request_id": request_id,
        "deadline": int(deadline * 1000),
        "invoked_function_arn": function["arn"],
        "xray_trace_id": None,
        "client_context": None,
        "identity": None,
        "env_config": {
            "function_name": function["function_name"],
            "memory": function["memory_mb"],
            "version": "$LATEST",
            "log_stream": "",
            "log_group": f"/aws/lambda/{function['function_name']}",
        },
    }


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def metadata_prelude(response: http.client.HTTPResponse) -> bytes:
    """The streamed response's prelude (lambda-http/src/streaming.rs into_stream_response, requests.rs):
    Set-Cookie moves to `cookies`, a missing Content-Type becomes application/octet-stream, and LWA drops
    Transfer-Encoding (lib.rs fetch_response). A header given twice is a list (http_serde::header_map)."""
    headers: dict[str, Any] = {}
    cookies = []
    for given, value in response.getheaders():
        name = given.lower()
        if name == "set-cookie":
            cookies.append(value)
        elif name != "transfer-encoding":
            previous = headers.get(name)
            headers[name] = value if previous is None else [*_as_list(previous), value]
    headers.setdefault("content-type", "application/octet-stream")
    return _compact_json({"statusCode": response.status, "headers": headers, "cookies": cookies})


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def proxy_response(response: http.client.HTTPResponse, body: bytes) -> dict[str, Any]:
    """A buffered answer as lambda_http returns it to API Gateway REST (lambda-http/src/response.rs)."""
    multi: dict[str, list[str]] = {}
    for name, value in response.getheaders():
        if name.lower() != "transfer-encoding":
            multi.setdefault(name.lower(), []).append(value)
    content_type = (multi.get("content-type") or [""])[0].split(";")[0].strip().lower()
    text = content_type.startswith(TEXT_TYPES) or content_type.endswith(TEXT_SUFFIXES)
    if text and "content-encoding" not in multi:
        try:
            return _proxy(response.status, multi, body.decode("utf-8") if body else None, False)
        except UnicodeDecodeError:
            pass
    return _proxy(response.status, multi, base64.b64encode(body).decode("ascii") if body else None, bool(body))


def _proxy(status: int, multi: dict[str, list[str]], body: str | None, encoded: bool) -> dict[str, Any]:
    return {"statusCode": status, "headers": {}, "multiValueHeaders": multi, "body": body, "isBase64Encoded": encoded}


class WebAdapter:
    """One environment's app process and the invocation in progress (at most one)."""

    def __init__(self, function: dict[str, Any], options: AdapterOptions, write: Frame) -> None:
        self._function = function
        self._options = options
        self._write = write
        self._lock = threading.Lock()
        self._current: tuple[str, http.client.HTTPConnection] | None = None
        self._cancelled: str | None = None
        self._stopping = False
        # /opt/bootstrap, LWA's exec wrapper, runs "${LAMBDA_TASK_ROOT}/${_HANDLER}" (layer/bootstrap).
        script = os.path.join(os.environ["LAMBDA_TASK_ROOT"], os.environ["_HANDLER"])
        self.app = subprocess.Popen([script], stdin=subprocess.DEVNULL)  # noqa: S603 - the function's own script

    def wait_until_ready(self) -> bool:
        """Check readiness every 10 ms until the app answers a healthy status; False if it exited first."""
        started = time.monotonic()
        next_log = NOT_READY_LOG_SECONDS
        while self.app.poll() is None:
            if self._ready():
                return True
            if time.monotonic() - started >= next_log:
                print(f"app is not ready after {int(next_log * 1000)}ms", file=sys.stderr, flush=True)
                next_log += NOT_READY_LOG_SECONDS
            time.sleep(READINESS_INTERVAL_SECONDS)
        return False

    def _ready(self) -> bool:
        options = self._options
        try:
            if options.readiness_tcp:
                socket.create_connection((options.host, options.readiness_port), timeout=1).close()
                return True
            connection = http.client.HTTPConnection(options.host, options.readiness_port, timeout=1)
            try:
                connection.request("GET", options.readiness_path)
                return connection.getresponse().status in options.healthy_statuses
            finally:
                connection.close()
        except (OSError, http.client.HTTPException):
            return False

    def watch_app(self) -> None:
        """The app is the runtime process: when it exits, the environment goes with it, as on Lambda."""

        def watch() -> None:
            status = self.app.wait()
            if not self._stopping:
                exit_like(status)

        threading.Thread(target=watch, name="app-watch", daemon=True).start()

    def invoke(self, request: dict[str, Any]) -> None:
        options = self._options
        request_id = request["request_id"]
        started = time.perf_counter()
        connection = http.client.HTTPConnection(options.host, options.port)
        with self._lock:
            self._current = (request_id, connection)
        try:
            context = lambda_context(self._function, request_id, request["deadline"])
            method, target, headers, body = app_request(request["event"], options, context)
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body or method not in ("GET", "HEAD", "OPTIONS"):
                connection.putheader("content-length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            if options.response_stream:
                self._stream(response)
            else:
                payload = proxy_response(response, response.read())
                self._end(payload, started)
                return
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a header http.client refuses
            if self._cancelled == request_id:
                self._end(None, started)
            else:
                self._fail(exc)
            return
        finally:
            with self._lock:
                self._current = None
            connection.close()
        self._end(None, started)

    def _stream(self, response: http.client.HTTPResponse) -> None:
        self._write(START, STREAM_CONTENT_TYPE.encode())
        self._write(CHUNK, metadata_prelude(response))
        self._write(CHUNK, DELIMITER)
        # read1 returns what has arrived (one chunk of a chunked body), without waiting for more.
        while chunk := response.read1(READ_SIZE):
            self._write(CHUNK, chunk)
        if response.length is None and not response.chunked and not self._app_alive_after_a_moment():
            exit_like(self.app.returncode)  # a body read to the connection's end: the app may have died

    def cancel(self, request_id: str) -> None:
        """The client went away: close the connection to the app (the app sees it disconnect) and stop reading."""
        with self._lock:
            if self._current is None or self._current[0] != request_id:
                return
            self._cancelled = request_id
            connection = self._current[1]
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

    def _end(self, payload: Any, started: float) -> None:
        handler_ms = (time.perf_counter() - started) * 1000
        self._write(END, json.dumps({"payload": payload, "aws_calls": {}, "handler_ms": handler_ms}).encode())

    def _fail(self, exc: BaseException) -> None:
        if not self._app_alive_after_a_moment():
            # The app exited: so does the environment, before any answer (the caller hears Runtime.ExitError).
            exit_like(self.app.returncode)
        # The adapter's own error for an app that answered nothing usable (lib.rs: `client.request(...)?`).
        message = f"{type(exc).__name__}: {exc}"
        error = {"errorType": "WebAdapterError", "errorMessage": message, "stackTrace": []}
        self._write(ERROR, json.dumps(error).encode())

    def _app_alive_after_a_moment(self) -> bool:
        # A failed connection is often the app dying: give its exit a moment to be seen.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.app.wait(timeout=0.2)
        return self.app.poll() is None

    def stop(self) -> None:
        self._stopping = True
        self.app.terminate()
        try:
            self.app.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.app.kill()


def exit_like(status: int) -> None:
    """End this process the way the app ended: its exit status, or its signal."""
    sys.stderr.flush()
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status if status >= 0 else 128 - status)


def serve(function: dict[str, Any], requests: BinaryIO, responses: BinaryIO) -> None:
    """Run the app, answer READY once it is ready, then serve INVOKE frames until stdin closes."""

    def write(kind: bytes, body: bytes) -> None:
        write_frame(responses, kind, body)

    adapter = WebAdapter(function, AdapterOptions.from_environment(dict(os.environ)), write)
    if not adapter.wait_until_ready():
        status = adapter.app.returncode
        exit_text = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        error = {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with error: {exit_text}"}
        write(ERROR, json.dumps({**error, "stackTrace": []}).encode())
        sys.exit(1)
    adapter.watch_app()
    write(READY, json.dumps({"pid": os.getpid(), "app_pid": adapter.app.pid}).encode())
    invocations: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read_requests() -> None:
        # A CANCEL must be seen while an invocation streams: this thread reads, the main one invokes.
        while (frame := read_frame(requests)) is not None:
            kind, body = frame
            if kind == CANCEL:
                adapter.cancel(body.decode())
            elif kind == INVOKE:
                invocations.put(json.loads(body))
        invocations.put(None)

    threading.Thread(target=read_requests, name="requests", daemon=True).start()
    while (request := invocations.get()) is not None:
        adapter.invoke(request)
    adapter.stop()
