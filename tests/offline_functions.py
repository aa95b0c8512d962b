"""Lambda handlers for the offline gateway's tests: one answers with the event it got, two misbehave."""

import json
import os
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
