"""API Gateway REST proxy events (payload format 1.0) and the reading of Lambda proxy responses."""

import base64
import binascii
import fnmatch
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from offline.template import ACCOUNT_ID


@dataclass(frozen=True)
class IncomingRequest:
    """An HTTP request as the gateway received it; `path` is relative to the stage, not yet URL-decoded."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    host: str


@dataclass(frozen=True)
class Caller:
    """What API Gateway learned about the caller before the integration: its request id and API key."""

    request_id: str
    api_key: str | None = None
    api_key_id: str | None = None
    # Set on an AWS_IAM route once the signature is verified (offline.iam_auth): the caller's IAM identity.
    access_key: str | None = None
    user_arn: str | None = None
    user_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedProxyResponse(ValueError):
    """The function's result is not a Lambda proxy response (API Gateway answers 502)."""


def proxy_event(
    request: IncomingRequest,
    *,
    caller: Caller,
    resource_path: str,
    path_parameters: dict[str, str],
    rest_api_id: str,
    stage: str,
    binary_media_types: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The event a Lambda proxy integration receives for `request`."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value  # the last value wins, as in API Gateway's single-value map
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in request.query:
        query[name] = value
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _event_body(request, headers, binary_media_types)
    now = time.time()
    return {
        "resource": resource_path,
        "path": unquote(request.path),
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": rest_api_id,
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "extendedRequestId": caller.request_id,
            "httpMethod": request.method,
            "identity": {
                "accessKey": caller.access_key,
                "accountId": caller.account_id,
                "apiKey": caller.api_key,
                "apiKeyId": caller.api_key_id,
                "caller": caller.user_id,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": request.source_ip,
                "user": caller.user_id,
                "userAgent": _header(headers, "user-agent"),
                "userArn": caller.user_arn,
            },
            "path": f"/{stage}{unquote(request.path)}",
            "protocol": "HTTP/1.1",
            "requestId": caller.request_id,
            "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": "offline",
            "resourcePath": resource_path,
            "stage": stage,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _event_body(
    request: IncomingRequest, headers: dict[str, str], binary_media_types: tuple[str, ...]
) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    content_type = (_header(headers, "content-type") or "").split(";")[0].strip()
    declared_binary = any(fnmatch.fnmatch(content_type, pattern) for pattern in binary_media_types)
    if not declared_binary:
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # not text whatever the API declares: pass it on intact rather than mangled
    return base64.b64encode(request.body).decode("ascii"), True


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def read_proxy_response(result: Any) -> ProxyResponse:
    """Turn a Lambda proxy result into status, headers and body, as API Gateway does, or raise."""
    if not isinstance(result, dict):
        raise MalformedProxyResponse(f"the function returned {type(result).__name__}, not an object")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    multi = {name.lower() for name, _ in headers}
    headers.extend(
        (str(name), str(value)) for name, value in (result.get("headers") or {}).items() if name.lower() not in multi
    )
    if not any(name.lower() == "content-type" for name, _ in headers):
        # A REST API answers application/json when the integration names no type.
        headers.append(("Content-Type", "application/json"))
    return ProxyResponse(status=status, headers=headers, body=_response_body(result))


def _response_body(result: dict[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedProxyResponse("body must be a string")
    if result.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise MalformedProxyResponse("isBase64Encoded is true but body is not base64") from exc
    return body.encode("utf-8")
