"""Builds Lambda inputs for in-process handler tests from the sample events in events/."""

import base64
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


OPERATOR_ARN = "arn:aws:iam::123456789012:user/alice"


def admin_event(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    *,
    user_arn: str | None = OPERATOR_ARN,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The sample /admin event (IAM-authorized: requestContext.identity names the caller) for another call.
    `path` is the resource's path with its values ("/admin/partners/p_1"); a dict body is sent as JSON, bytes as
    base64 (API Gateway's binary pass-through), a str as is."""
    event = copy.deepcopy(sample_event("admin_list_partners.json"))
    resource, parameters = _admin_resource(path)
    event.update(httpMethod=method, path=path, resource=resource, pathParameters=parameters or None)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()} if query else None
    if isinstance(body, bytes) or base64_body:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    else:
        event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
        event["isBase64Encoded"] = False
    context = event["requestContext"]
    context.update(httpMethod=method, resourcePath=resource, path=f"/live{path}", requestId=str(uuid.uuid4()))
    context["identity"]["userArn"] = user_arn
    return event


def _admin_resource(path: str) -> tuple[str, dict[str, str]]:
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[:2] == ["admin", "partners"]:
        return "/" + "/".join(["admin", "partners", "{partner_id}", *parts[3:]]), {"partner_id": parts[2]}
    return path, {}
