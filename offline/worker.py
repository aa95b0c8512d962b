"""One Lambda execution environment offline: a process that imports one function's handler and serves one
invocation at a time, started and spoken to by offline.functions.

The protocol is length-prefixed frames (one kind byte, a 4-byte big-endian length, the body): the parent
writes INVOKE frames on the worker's stdin; the worker answers on its own pipe (stdout and stderr are the
function's logs) with READY once the handler is imported (or ERROR if it cannot be), then per invocation
either END with the JSON result, or START, CHUNK... END for a streamed response, or ERROR with Lambda's
error payload. The parent may send CANCEL (the request id) while a response streams: its client went away.
A Lambda Web Adapter function's worker runs offline.web_adapter instead of importing a handler.
Standard library only: the function's imports are the function's own.
"""

import json
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from importlib import import_module
from typing import Any, BinaryIO

INVOKE, READY, START, CHUNK, END, ERROR, CANCEL = b"I", b"R", b"S", b"C", b"E", b"X", b"K"
HEADER_SIZE = 5
PARENT_POLL_SECONDS = 0.5


def write_frame(stream: BinaryIO, kind: bytes, body: bytes) -> None:
    stream.write(kind + len(body).to_bytes(4, "big") + body)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None when the other side has closed the pipe."""
    header = _read_exactly(stream, HEADER_SIZE)
    if header is None:
        return None
    body = _read_exactly(stream, int.from_bytes(header[1:], "big"))
    if body is None:
        return None
    return header[:1], body


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class LambdaContext:
    """The attributes and method of Lambda's Python context object that handlers and Powertools use."""

    function_version = "$LATEST"
    identity = None
    client_context = None
    tenant_id = None

    def __init__(self, function: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name = function["function_name"]
        self.memory_limit_in_mb = function["memory_mb"]
        self.invoked_function_arn = function["arn"]
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"offline/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.time()) * 1000), 0)


class AwsCalls:
    """The AWS calls of the current invocation, by "service: operation": count and seconds (for benchmarks)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}
        self._started = threading.local()

    def install(self) -> None:
        try:
            import boto3  # noqa: PLC0415 - only where the function has it
        except ImportError:
            return
        # Before the handler's import creates its clients: a client copies the session's hooks when created.
        events = boto3._get_default_session().events
        events.register("before-call", self._before)
        events.register("after-call", self._after)

    def take(self) -> dict[str, list[float]]:
        calls, self.calls = self.calls, {}
        return calls

    def _before(self, model: Any, **_: Any) -> None:
        self._started.at = time.perf_counter()

    def _after(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_id}: {model.name}"
        entry = self.calls.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - getattr(self._started, "at", time.perf_counter())


def main() -> None:
    function = json.loads(sys.argv[1])
    responses = os.fdopen(int(sys.argv[2]), "wb")
    requests = sys.stdin.buffer
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when a worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(os.getppid())
    if function.get("web_adapter"):
        from offline import web_adapter  # noqa: PLC0415 - only LWA functions need it

        web_adapter.serve(function, requests, responses)
        return
    calls = AwsCalls()
    calls.install()
    handler = _import(function, responses)
    while (frame := read_frame(requests)) is not None:
        kind, body = frame
        if kind == INVOKE:
            _invoke(function, handler, json.loads(body), responses, calls)


def _die_with(parent: int) -> None:
    """Exit when the parent goes, even in the middle of an invocation (a killed parent closes no pipes for us)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        # The worker leads its own process group (offline.functions starts it so): a web app it started goes too.
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _import(function: dict[str, Any], responses: BinaryIO) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = function["handler"].rpartition(".")
    try:
        handler = getattr(import_module(module_name), attribute)
    except Exception as exc:
        # What Lambda's Python runtime reports for a handler it cannot load.
        kind = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else "Runtime.HandlerNotFound"
        if isinstance(exc, AttributeError):
            message = f"Handler '{attribute}' missing on module '{module_name}'"
        else:
            message = f"Unable to import module '{module_name}': {exc}"
        write_frame(responses, ERROR, _error(kind, message, exc))
        sys.exit(1)
    write_frame(responses, READY, json.dumps({"pid": os.getpid()}).encode())
    return handler  # type: ignore[no-any-return]


def _invoke(
    function: dict[str, Any],
    handler: Callable[[Any, Any], Any],
    request: dict[str, Any],
    responses: BinaryIO,
    calls: AwsCalls,
) -> None:
    context = LambdaContext(function, request["request_id"], request["deadline"])
    calls.take()
    started = time.perf_counter()
    try:
        payload = handler(request["event"], context)
    except Exception as exc:  # a failing handler is a result, as in Lambda
        # The trace starts in the handler, as Lambda's does, not in this worker.
        write_frame(responses, ERROR, _error(type(exc).__name__, str(exc), exc, skip_frames=1))
        return
    try:
        handler_ms = (time.perf_counter() - started) * 1000
        body = json.dumps({"payload": payload, "aws_calls": calls.take(), "handler_ms": handler_ms}).encode()
    except (TypeError, ValueError) as exc:
        write_frame(responses, ERROR, _error("Runtime.MarshalError", f"Unable to marshal response: {exc}", exc))
        return
    write_frame(responses, END, body)


def _error(kind: str, message: str, exc: BaseException, skip_frames: int = 0) -> bytes:
    frames = exc.__traceback__
    for _ in range(skip_frames):
        frames = frames.tb_next if frames else None
    trace = "".join(traceback.format_exception(type(exc), exc, frames))
    return json.dumps({"errorType": kind, "errorMessage": message, "stackTrace": trace.splitlines()}).encode()


if __name__ == "__main__":
    main()
