"""The template's Lambda functions, run in-process: handler import, environment, context and timeout.

Every function shares this process, so what Lambda isolates is approximated: a module imported by two
functions is imported once, and environment variables on which functions disagree are swapped in for the
duration of an invocation (under a lock, so those invocations run one at a time).
"""

import importlib
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samcli.lib.providers.sam_function_provider import SamFunctionProvider

from offline.template import ACCOUNT_ID, StackTemplate, TemplateError

Handler = Callable[[Any, Any], Any]

# Lambda's own defaults when the template says nothing.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128


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
        )
    return specs


def _env_value(value: Any) -> str:
    # CloudFormation turns every environment value into a string; booleans the way YAML wrote them.
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class LocalLambdaContext:
    """The attributes and method of Lambda's Python context object that handlers and Powertools use."""

    function_version = "$LATEST"
    identity = None
    client_context = None
    tenant_id = None

    def __init__(self, spec: FunctionSpec, request_id: str | None = None) -> None:
        self.function_name = spec.function_name
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = spec.arn
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = f"offline/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@dataclass(frozen=True)
class InvocationResult:
    """What Lambda returns to its caller: the handler's result, or an error payload like Lambda's."""

    request_id: str
    payload: Any
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class FunctionRuntime:
    """Imports the handlers once and invokes them with the template's environment and timeout."""

    def __init__(self, specs: dict[str, FunctionSpec], base_environment: dict[str, str]) -> None:
        self.specs = specs
        self._shared, self._own = _split_environment(specs)
        self._base = base_environment
        self._swap_lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}

    @property
    def shared_environment(self) -> dict[str, str]:
        """What every function may see at all times: the base plus the variables no two functions disagree on."""
        return {**self._base, **self._shared}

    def load(self) -> None:
        """Import every handler now, so a bad Handler string fails the start rather than the first request."""
        for logical_id, spec in self.specs.items():
            if str(spec.code_dir) not in sys.path:
                sys.path.insert(0, str(spec.code_dir))
            with self._environment(logical_id):
                self._handlers[logical_id] = _import_handler(spec)

    def invoke(self, logical_id: str, event: Any, request_id: str | None = None) -> InvocationResult:
        spec = self.specs[logical_id]
        handler = self._handlers.get(logical_id) or _import_handler(spec)
        context = LocalLambdaContext(spec, request_id)
        started = time.perf_counter()
        with self._environment(logical_id):
            try:
                payload = handler(event, context)
            except Exception as exc:  # a failing handler is a result, as in Lambda
                # The trace starts in the handler, as Lambda's does, not in this runtime.
                frames = exc.__traceback__.tb_next if exc.__traceback__ else None
                trace = "".join(traceback.format_exception(type(exc), exc, frames))
                return _failure(context, started, type(exc).__name__, str(exc), trace)
        # The handler ran to the end in this thread; Lambda would have stopped it at the timeout.
        if (time.perf_counter() - started) > spec.timeout_seconds:
            message = f"Task timed out after {spec.timeout_seconds:.2f} seconds"
            return _failure(context, started, "Sandbox.Timedout", message, "")
        return InvocationResult(context.aws_request_id, payload, None, (time.perf_counter() - started) * 1000)

    @contextmanager
    def _environment(self, logical_id: str) -> Iterator[None]:
        own = self._own.get(logical_id)
        if not own:
            yield
            return
        with self._swap_lock:
            saved = {name: os.environ.get(name) for name in own}
            os.environ.update(own)
            try:
                yield
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value


def _failure(context: LocalLambdaContext, started: float, kind: str, message: str, trace: str) -> InvocationResult:
    error = {"errorType": kind, "errorMessage": message, "stackTrace": trace.splitlines()}
    return InvocationResult(context.aws_request_id, None, error, (time.perf_counter() - started) * 1000)


def _import_handler(spec: FunctionSpec) -> Handler:
    module_name, _, attribute = spec.handler.rpartition(".")
    if not module_name:
        raise TemplateError(f"{spec.logical_id}: Handler {spec.handler!r} is not module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TemplateError(f"{spec.logical_id}: cannot import {module_name} from {spec.code_dir}: {exc}") from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise TemplateError(f"{spec.logical_id}: {module_name} has no function {attribute}")
    return handler  # type: ignore[no-any-return]


def _split_environment(specs: dict[str, FunctionSpec]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Variables every function agrees on (set once) and, per function, those it must have swapped in."""
    values: dict[str, set[str]] = {}
    for spec in specs.values():
        for name, value in spec.environment.items():
            values.setdefault(name, set()).add(value)
    conflicting = {name for name, seen in values.items() if len(seen) > 1}
    shared = {
        name: value for spec in specs.values() for name, value in spec.environment.items() if name not in conflicting
    }
    own = {
        logical_id: {name: value for name, value in spec.environment.items() if name in conflicting}
        for logical_id, spec in specs.items()
    }
    return shared, {logical_id: variables for logical_id, variables in own.items() if variables}
