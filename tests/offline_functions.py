"""Lambda handlers for the offline runtime's and gateway's tests: one answers with the event it got, two misbehave,
others hold module state or sleep, to show what an execution environment isolates and when it is stopped."""

import json
import os
import time
from typing import Any


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Lambda proxy response whose body is the event, so a test can read what the gateway sent."""
    return {
        "statusCode": 200,
        "headers": {"X-Function": context.function_name},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(event),
    }


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("the function failed")


def malformed(event: dict[str, Any], context: Any) -> str:
    return "not a proxy response"


def read_environment(event: dict[str, Any], context: Any) -> str | None:
    """The value of the environment variable the event names, as the function sees it."""
    return os.environ.get(event["name"])


# What the last invocation of this environment stored, as Powertools' `app.current_event` or a logger's keys do.
_current_caller: list[str] = []


def remember(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Keeps the caller in module state for a while, then answers with what the module holds by then."""
    started = time.time()
    _current_caller[:] = [event["caller"]]
    time.sleep(event.get("hold_seconds", 0.05))
    return {
        "caller": event["caller"],
        "module_caller": _current_caller[0],
        "request_id": context.aws_request_id,
        "pid": os.getpid(),
        "started": started,
        "ended": time.time(),
    }


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sleeps for the event's "seconds" (invoked directly) or its JSON body's (through the gateway)."""
    seconds = event.get("seconds", json.loads(event.get("body") or "{}").get("seconds", 0))
    time.sleep(seconds)
    return {"statusCode": 200, "body": json.dumps({"slept": seconds})}
