"""The template's Lambda functions, run as Lambda runs them: each invocation in an execution environment of
its own function (a worker process, offline.worker) that serves one invocation at a time.

Per function, a pool of workers is started on demand, up to the function's ReservedConcurrentExecutions
(further invocations are throttled, as Lambda throttles them) or, where none is set, up to a local cap
(further invocations wait for a worker). A worker keeps its imports and clients between invocations (warm),
gets the function's environment from the template and nothing else of this process, and is killed at the
function's timeout; a dead worker is replaced by a new one (a cold start) when next needed.

A Lambda Web Adapter function (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap with the adapter's layer) runs its
Handler script, a web app on a port of its own, in each worker, which plays the adapter (offline.web_adapter).
"""

import ast
import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from samcli.lib.providers.sam_function_provider import SamFunctionProvider

from offline import worker as worker_protocol
from offline.template import ACCOUNT_ID, StackTemplate, TemplateError

# Lambda's own defaults when the template says nothing.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
# Workers per function where the template reserves no concurrency: a local cap (Lambda's account limit is
# 1,000), enough for bursts of tests; each worker is a Python process of about 90 MB.
DEFAULT_MAX_CONCURRENCY = 8
# How long a cold start (the worker's imports, Lambda's init phase) may take before it counts as failed.
INIT_TIMEOUT_SECONDS = 30.0
# The variables of this process a worker keeps: what the interpreter needs, never credentials or endpoints.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A Lambda Web Adapter function: its exec wrapper (the layer's bootstrap) and the layer's name in its ARN.
WEB_ADAPTER_WRAPPER = "/opt/bootstrap"
WEB_ADAPTER_LAYER = ":layer:LambdaAdapterLayer"


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function as SAM CLI reads it, with its environment resolved to physical names."""

    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    timeout_seconds: int
    memory_mb: int
    region: str
    environment: dict[str, str] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    # Runs its Handler script as a web app behind the Lambda Web Adapter.
    web_adapter: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"


def function_specs(template: StackTemplate) -> dict[str, FunctionSpec]:
    """Every function CloudFormation would create (conditions applied), by logical id."""
    active = set(template.of_type("AWS::Serverless::Function"))
    specs = {}
    for function in SamFunctionProvider(template.stacks, ignore_code_extraction_warnings=True).get_all():
        if function.name not in active:
            continue
        if not function.handler or not function.codeuri:
            raise TemplateError(f"{function.name}: only zip functions with a Handler and a local CodeUri run offline")
        variables = (function.environment or {}).get("Variables") or {}
        properties = template.resources[function.name].get("Properties", {})
        web_adapter = _is_web_adapter(function.name, variables, [layer.arn for layer in function.layers])
        specs[function.name] = FunctionSpec(
            logical_id=function.name,
            function_name=str(properties.get("FunctionName") or f"{template.stack_name}-{function.name}"),
            handler=function.handler,
            code_dir=Path(function.codeuri),
            timeout_seconds=int(function.timeout or DEFAULT_TIMEOUT_SECONDS),
            memory_mb=int(function.memory or DEFAULT_MEMORY_MB),
            region=template.region,
            environment={name: _env_value(value) for name, value in variables.items()},
            events=dict(function.events or {}),
            reserved_concurrency=_reserved_concurrency(
                template.evaluated(properties.get("ReservedConcurrentExecutions"))
            ),
            web_adapter=web_adapter,
        )
    return specs


def _is_web_adapter(logical_id: str, variables: dict[str, Any], layers: list[str]) -> bool:
    if variables.get("AWS_LAMBDA_EXEC_WRAPPER") != WEB_ADAPTER_WRAPPER:
        return False
    if not any(WEB_ADAPTER_LAYER in str(arn) for arn in layers):
        # On AWS /opt/bootstrap comes from the layer: without it the function cannot start.
        raise TemplateError(f"{logical_id}: AWS_LAMBDA_EXEC_WRAPPER={WEB_ADAPTER_WRAPPER} needs the LambdaAdapterLayer")
    return True


def _reserved_concurrency(value: Any) -> int | None:
    # Unset (or an !If that evaluated to AWS::NoValue): the function draws on the account's pool.
    return None if value is None else int(value)


def _env_value(value: Any) -> str:
    # CloudFormation turns every environment value into a string; booleans the way YAML wrote them.
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass(frozen=True)
class InvocationResult:
    """What Lambda returns to its caller: the handler's result, or an error payload like Lambda's."""

    request_id: str
    payload: Any
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    # Lambda refused the invocation (429 TooManyRequestsException): no function ran.
    throttled: bool = False
    # The worker that served it (its process id), and the AWS calls it made, "service: operation" -> [count, s].
    worker_pid: int | None = None
    aws_calls: dict[str, list[float]] = field(default_factory=dict)
    # The handler's own time, as Lambda's "Duration"; duration_ms adds the trip to and from the worker.
    handler_ms: float | None = None
    # The function streamed its response (its bytes went to on_chunk, or are the payload when there was none).
    streamed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class Throttled(Exception):
    """The function's reserved concurrency is in use: Lambda refuses the invocation."""


class StopStream(Exception):
    """Raised by an `on_chunk` that wants no more of the stream (its client went away): the invocation is
    told so (a web app sees its connection close) and its further chunks are dropped."""


class FunctionRuntime:
    """The template's functions, each with its pool of workers; `close()` (or `with`) stops every worker."""

    def __init__(
        self,
        specs: dict[str, FunctionSpec],
        base_environment: dict[str, str],
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        log: IO[bytes] | int | None = None,
    ) -> None:
        """`base_environment`: what every function gets besides its own variables (the emulator's endpoint and
        dummy credentials); `log`: where the functions' stdout and stderr go (a file, a descriptor, or None for
        this process's own)."""
        self.specs = specs
        self._pools = {
            logical_id: _Pool(spec, _worker_environment(spec, base_environment), max_concurrency, log)
            for logical_id, spec in specs.items()
        }
        self._aws_calls: dict[str, list[float]] = {}
        self._counting = threading.Lock()
        _running.add(self)

    def __enter__(self) -> "FunctionRuntime":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def load(self) -> None:
        """Check every Handler now (without importing it), so a bad one fails the start, not the first request."""
        for spec in self.specs.values():
            _check_handler(spec)

    def prewarm(self) -> None:
        """Start one worker per function now, in parallel, and wait until each has imported its handler."""
        threads = [threading.Thread(target=pool.prewarm, daemon=True) for pool in self._pools.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def invoke(
        self,
        logical_id: str,
        event: Any,
        request_id: str | None = None,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> InvocationResult:
        """Run one invocation in a worker of the function; a streamed response's chunks go to `on_chunk`."""
        request_id = request_id or str(uuid.uuid4())
        pool = self._pools[logical_id]
        try:
            worker = pool.acquire()
        except Throttled:
            message = "Rate Exceeded."
            error = {"errorType": "TooManyRequestsException", "errorMessage": message, "stackTrace": []}
            return InvocationResult(request_id, None, error, 0.0, throttled=True)
        # From here: the wait for a free worker under the local cap (no such wait on AWS) and the cold start
        # (Lambda's init phase, which has its own limit) are not the invocation's duration.
        started = time.perf_counter()
        try:
            outcome = worker.invoke(request_id, event, on_chunk)
        finally:
            pool.release(worker)
        with self._counting:
            for operation, (count, seconds) in outcome.aws_calls.items():
                total = self._aws_calls.setdefault(operation, [0, 0.0])
                total[0] += count
                total[1] += seconds
        return InvocationResult(
            request_id,
            outcome.payload,
            outcome.error,
            _since(started),
            False,
            worker.pid,
            outcome.aws_calls,
            outcome.handler_ms,
            outcome.streamed,
        )

    def aws_calls(self) -> dict[str, list[float]]:
        """Every AWS call the functions made so far, by "service: operation": [count, seconds inside them]."""
        with self._counting:
            return {operation: list(total) for operation, total in self._aws_calls.items()}

    def close(self) -> None:
        """Stop every worker (safe to call twice)."""
        for pool in self._pools.values():
            pool.close()
        _running.discard(self)


@dataclass(frozen=True)
class _Outcome:
    payload: Any = None
    error: dict[str, Any] | None = None
    aws_calls: dict[str, list[float]] = field(default_factory=dict)
    handler_ms: float | None = None
    streamed: bool = False


class _Pool:
    """One function's workers: idle ones are reused (warm), new ones started up to the limit."""

    def __init__(self, spec: FunctionSpec, environment: dict[str, str], cap: int, log: IO[bytes] | int | None) -> None:
        self._spec = spec
        self._environment = environment
        self._log = log
        self._limit = spec.reserved_concurrency if spec.reserved_concurrency is not None else cap
        self._throttles = spec.reserved_concurrency is not None
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self) -> "_Worker":
        with self._changed:
            self._drop_exited()
            while not self._idle and len(self._workers) + self._starting >= self._limit:
                if self._throttles or self._closed:
                    raise Throttled(self._spec.logical_id)
                self._changed.wait()
                self._drop_exited()
            if self._closed:  # the stack is stopping
                raise Throttled(self._spec.logical_id)
            if self._idle:
                return self._idle.pop()
            self._starting += 1
        try:
            worker = _Worker(self._spec, self._environment, self._log)
        finally:
            with self._changed:
                self._starting -= 1
        with self._changed:
            # Started while the pool closed: release() stops it after this one invocation.
            self._workers.add(worker)
        return worker

    def _drop_exited(self) -> None:
        # A worker whose process exited while idle (a web app that stopped) is not reused, as on Lambda.
        for worker in [worker for worker in self._idle if worker.process.poll() is not None]:
            self._idle.remove(worker)
            self._workers.discard(worker)
            worker.kill()

    def prewarm(self) -> None:
        with contextlib.suppress(Throttled):
            self.release(self.acquire())

    def release(self, worker: "_Worker") -> None:
        with self._changed:
            if worker.alive and not self._closed:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
                worker.kill()
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._changed.notify_all()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.wait()


class _WorkerGone(Exception):
    """The worker's end of the pipe closed: its process exited."""


class _Worker:
    """One execution environment: a `python -m offline.worker` process and its two pipes."""

    def __init__(self, spec: FunctionSpec, environment: dict[str, str], log: IO[bytes] | int | None) -> None:
        self._spec = spec
        self.alive = True
        self._closing = threading.Lock()
        self._init_error: dict[str, Any] | None = None
        responses, writer = os.pipe()
        function = {
            "handler": spec.handler,
            "function_name": spec.function_name,
            "memory_mb": spec.memory_mb,
            "arn": spec.arn,
            "web_adapter": spec.web_adapter,
        }
        if spec.web_adapter:
            environment = {**environment, **_app_port(environment)}
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own worker module, the template's handler
                [sys.executable, "-m", "offline.worker", json.dumps(function), str(writer)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(writer,),
                env=environment,
                cwd=spec.code_dir,
                # Its own process group: stopping the environment stops a web app it started too.
                process_group=0,
            )
        finally:
            os.close(writer)
        self.pid = self.process.pid
        self._responses = responses
        self._init()

    def _init(self) -> None:
        """Wait for the handler's import (the cold start); a failure is the first invocation's answer."""
        try:
            frame = self._read_frame(time.monotonic() + INIT_TIMEOUT_SECONDS)
        except _WorkerGone:
            frame = None
        if frame is not None and frame[0] == worker_protocol.READY:
            return
        self.kill()
        if frame is not None and frame[0] == worker_protocol.ERROR:
            self._init_error = json.loads(frame[1])
        else:
            message = f"the execution environment did not start within {INIT_TIMEOUT_SECONDS:.0f} s"
            self._init_error = _error("Runtime.Unknown", message)

    def invoke(self, request_id: str, event: Any, on_chunk: Callable[[bytes], None] | None) -> _Outcome:
        if self._init_error is not None:
            return _Outcome(error=self._init_error)
        timeout = self._spec.timeout_seconds
        deadline = time.monotonic() + timeout
        request = {"request_id": request_id, "event": event, "deadline": time.time() + timeout}
        streamed, collected = False, bytearray()
        try:
            self._send(worker_protocol.INVOKE, json.dumps(request).encode())
            while (frame := self._read_frame(deadline)) is not None:
                kind, body = frame
                if kind == worker_protocol.END:
                    answer = json.loads(body)
                    # A stream nobody read (no on_chunk) is the payload, as Invoke returns a streamed response.
                    payload = answer["payload"]
                    if streamed and on_chunk is None:
                        payload = collected.decode("utf-8", "replace")
                    return _Outcome(payload, None, answer["aws_calls"], answer["handler_ms"], streamed)
                if kind == worker_protocol.ERROR:
                    return _Outcome(error=json.loads(body), streamed=streamed)
                if kind == worker_protocol.START:
                    streamed = True
                elif kind == worker_protocol.CHUNK:
                    if on_chunk is None:
                        collected += body
                    elif not self._pass_on(on_chunk, body, request_id):
                        on_chunk = self._dropped
        except _WorkerGone:
            self.kill()
            status = self.process.wait()
            exit_text = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            message = f"RequestId: {request_id} Error: Runtime exited with error: {exit_text}"
            return _Outcome(error=_error("Runtime.ExitError", message))
        # Lambda stops the environment at the timeout, whatever the handler is doing.
        self.kill()
        return _Outcome(error=_error("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"))

    def _pass_on(self, on_chunk: Callable[[bytes], None], body: bytes, request_id: str) -> bool:
        """Give a chunk to the caller; False once it wants no more (the worker is told, and drops the rest)."""
        try:
            on_chunk(body)
        except StopStream:
            self._send(worker_protocol.CANCEL, request_id.encode())
            return False
        return True

    @staticmethod
    def _dropped(_: bytes) -> None:
        """Chunks still in flight after a StopStream."""

    def _send(self, kind: bytes, body: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(kind + len(body).to_bytes(4, "big") + body)
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerGone from exc

    def _read_frame(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next frame, or None at the deadline."""
        header = self._read(worker_protocol.HEADER_SIZE, deadline)
        if header is None:
            return None
        body = self._read(int.from_bytes(header[1:], "big"), deadline)
        return None if body is None else (header[:1], body)

    def _read(self, size: int, deadline: float) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not select.select([self._responses], [], [], remaining)[0]:
                    return None
                chunk = os.read(self._responses, size - len(data))
            except (OSError, ValueError) as exc:  # the pipe was closed: the worker is being stopped
                raise _WorkerGone from exc
            if not chunk:
                raise _WorkerGone
            data += chunk
        return bytes(data)

    def kill(self) -> None:
        self.alive = False
        self._signal_group(signal.SIGKILL)
        # Reap it now: Lambda's environment is gone when the caller hears of the timeout, not some time later.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._close_pipes()

    def stop(self) -> None:
        """Ask to exit (its stdin closes; a handler still running is ended too)."""
        if self.alive:
            self.alive = False
            self._signal_group(signal.SIGTERM)

    def wait(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Whatever of its group is left (a web app slow to stop) goes now.
        self._signal_group(signal.SIGKILL)
        self._close_pipes()

    def _signal_group(self, signum: signal.Signals) -> None:
        # The worker leads a group of its own (the pid is its group id until the last member is gone).
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            if self.process.poll() is None:
                self.process.send_signal(signum)

    def _close_pipes(self) -> None:
        # Once only: a closed descriptor's number is soon another file's.
        with self._closing:
            if self.process.stdin is not None and not self.process.stdin.closed:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            if self._responses >= 0:
                os.close(self._responses)
                self._responses = -1


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"errorType": kind, "errorMessage": message, "stackTrace": []}


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _worker_environment(spec: FunctionSpec, base: dict[str, str]) -> dict[str, str]:
    """What Lambda gives a function: its own variables and the runtime's, here with the emulator's endpoint."""
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    if spec.web_adapter:
        # A web app's script runs `python ...`: this Python (the project's, with its packages), as the
        # function's runtime is the first python on Lambda's PATH.
        inherited["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), inherited.get("PATH")]))
    return {
        **inherited,
        # The worker module itself; the function's code is its working directory, as /var/task is on Lambda.
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        # As `sam local` says it: Powertools' Tracer stays off (no X-Ray daemon here).
        "AWS_SAM_LOCAL": "true",
        **base,
        **spec.environment,
    }


def _app_port(environment: dict[str, str]) -> dict[str, str]:
    """A free local port for one environment's web app, in the variables the adapter and the app read."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    declared = environment.get("AWS_LWA_PORT") or environment.get("PORT") or "8080"
    ports = {"PORT": port}
    if "AWS_LWA_PORT" in environment:
        ports["AWS_LWA_PORT"] = port
    # A readiness check on the app's own port follows it; one on a port of its own stays as declared.
    if environment.get("AWS_LWA_READINESS_CHECK_PORT") == declared:
        ports["AWS_LWA_READINESS_CHECK_PORT"] = port
    return ports


def _check_handler(spec: FunctionSpec) -> None:
    """The Handler names a module file under CodeUri that defines the function (read, not imported), or for a
    web adapter function an executable script under CodeUri."""
    if spec.web_adapter:
        script = spec.code_dir / spec.handler
        if not script.is_file() or not os.access(script, os.X_OK):
            message = f"Handler {spec.handler} is not an executable file in {script.parent}"
            raise TemplateError(f"{spec.logical_id}: {message}")
        return
    module_name, _, attribute = spec.handler.rpartition(".")
    if not module_name:
        raise TemplateError(f"{spec.logical_id}: Handler {spec.handler!r} is not module.function")
    base = spec.code_dir.joinpath(*module_name.split("."))
    source = next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)
    if source is None:
        raise TemplateError(f"{spec.logical_id}: cannot import {module_name} from {spec.code_dir}: no such module")
    if attribute not in _top_level_names(ast.parse(source.read_bytes(), str(source))):
        raise TemplateError(f"{spec.logical_id}: {module_name} has no function {attribute}")


def _top_level_names(module: ast.Module) -> set[str]:
    names = set()
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


# Every runtime not yet closed: their workers are stopped when this process exits normally (a killed parent
# is noticed by the workers themselves).
_running: "weakref.WeakSet[FunctionRuntime]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for runtime in list(_running):
        runtime.close()
