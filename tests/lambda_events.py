"""Builds Lambda inputs for in-process handler tests from the sample events in events/."""

import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


@dataclass
class LambdaContext:
    """The attributes Powertools and our handlers read from Lambda's context object."""

    function_name: str = "SignupFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:SignupFunction"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 20_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return event


def signup_event(body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The sample POST /signup event with another body (a dict is sent as JSON, a str as is)."""
    event = copy.deepcopy(sample_event("signup.json"))
    event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    event["isBase64Encoded"] = False
    event["headers"] = {"Content-Type": "application/json", **(headers or {})}
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event
