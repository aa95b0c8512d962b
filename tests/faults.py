"""Inject AWS failures the way AWS produces them: an operation answers with AWS's error (or the function
dies between two calls) once, through botocore's own event hooks, so the code under test sees exactly
what boto3 raises for that error."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.hooks import BaseEventHooks


class LambdaTimedOut(BaseException):
    """Simulates Lambda killing the function mid-way: no except-Exception cleanup runs."""


@contextmanager
def fails_once(
    service_id: str, operation: str, code: str, status: int = 400, events: BaseEventHooks | None = None
) -> Iterator[Callable[[], int]]:
    """The next `operation` call answers `code` (e.g. TooManyRequestsException) instead of running; `events`:
    of one client already made (`client.meta.events`), instead of every client made inside the block."""
    with _on_call(service_id, operation, lambda: _error(code, status), events) as calls:
        yield calls


@contextmanager
def throttled(service_id: str, operation: str, every: int = 1) -> Iterator[Callable[[], int]]:
    """Every `every`-th `operation` call answers TooManyRequestsException (429), as API Gateway does once
    botocore's retries of a throttled call ran out; the calls in between run."""
    calls = 0
    refused = 0
    active = True  # clients created inside the block keep a copy of the hook: it must go quiet after it

    def maybe_throttle(**_: Any) -> Any:
        nonlocal calls, refused
        with lock:
            if not active:
                return None
            calls += 1
            if calls % every:
                return None
            refused += 1
        return _error("TooManyRequestsException", 429)

    lock = threading.Lock()
    name = f"before-call.{service_id}.{operation}"
    events = boto3._get_default_session().events
    events.register(name, maybe_throttle)
    try:
        yield lambda: refused
    finally:
        active = False
        events.unregister(name, maybe_throttle)


@contextmanager
def dies_before(service_id: str, operation: str) -> Iterator[Callable[[], int]]:
    """The function is killed just before the next `operation` call."""

    def die() -> Any:
        raise LambdaTimedOut(f"killed before {operation}")

    with _on_call(service_id, operation, die) as calls:
        yield calls


def _error(code: str, status: int) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {"Error": {"Code": code, "Message": "injected fault"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return AWSResponse("https://injected", status, {}, None), parsed  # type: ignore[arg-type]


@contextmanager
def _on_call(
    service_id: str, operation: str, outcome: Callable[[], Any], events: BaseEventHooks | None = None
) -> Iterator[Callable[[], int]]:
    emitter: BaseEventHooks = events or boto3._get_default_session().events
    injected = 0

    def once(**_: Any) -> Any:
        nonlocal injected
        if injected:
            return None
        injected += 1
        return outcome()

    name = f"before-call.{service_id}.{operation}"
    emitter.register(name, once)
    try:
        yield lambda: injected
    finally:
        emitter.unregister(name, once)
