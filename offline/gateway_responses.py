"""API Gateway's own answers (gateway responses): the defaults AWS documents, and the template's overrides.

A REST API answers a refused request with `{"message":"<message>"}` and the type's status code unless the
API's GatewayResponses customize that type (or DEFAULT_4XX / DEFAULT_5XX): then its StatusCode, headers
and `application/json` template apply, with `$context` variables substituted (API Gateway does not run
gateway response templates through VTL).
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Any


class ResponseType(StrEnum):
    """The gateway response types the offline gateway produces (a subset of API Gateway's list)."""

    MISSING_AUTHENTICATION_TOKEN = "MISSING_AUTHENTICATION_TOKEN"  # noqa: S105 - a type name, not a secret
    INVALID_API_KEY = "INVALID_API_KEY"
    # AWS_IAM routes: a signature that is incomplete, for another scope, stale or wrong (offline.iam_auth).
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    THROTTLED = "THROTTLED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    BAD_REQUEST_BODY = "BAD_REQUEST_BODY"
    INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
    # A failed function or a malformed proxy response: API Gateway answers 502 and only DEFAULT_5XX applies.
    LAMBDA_FAILURE = "DEFAULT_5XX"


@dataclass(frozen=True)
class Refusal:
    """Why the gateway answered instead of the function."""

    type: ResponseType
    status: HTTPStatus
    message: str
    validation_errors: str = ""
    # API Gateway's x-amzn-ErrorType header where the offline gateway models it (IAM authorization's refusals).
    amzn_error_type: str | None = None


# Statuses and messages as API Gateway returns them with no customization.
REFUSALS: dict[ResponseType, Refusal] = {
    refusal.type: refusal
    for refusal in (
        Refusal(ResponseType.MISSING_AUTHENTICATION_TOKEN, HTTPStatus.FORBIDDEN, "Missing Authentication Token"),
        Refusal(ResponseType.INVALID_API_KEY, HTTPStatus.FORBIDDEN, "Forbidden"),
        Refusal(ResponseType.INVALID_SIGNATURE, HTTPStatus.FORBIDDEN, "Forbidden"),
        Refusal(ResponseType.THROTTLED, HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests"),
        Refusal(ResponseType.QUOTA_EXCEEDED, HTTPStatus.TOO_MANY_REQUESTS, "Limit Exceeded"),
        Refusal(ResponseType.BAD_REQUEST_BODY, HTTPStatus.BAD_REQUEST, "Invalid request body"),
        Refusal(ResponseType.INTEGRATION_TIMEOUT, HTTPStatus.GATEWAY_TIMEOUT, "Endpoint request timed out"),
        Refusal(ResponseType.LAMBDA_FAILURE, HTTPStatus.BAD_GATEWAY, "Internal server error"),
    )
}

_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")
_REQUEST_HEADER = "method.request.header."


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class GatewayResponses:
    """The gateway responses of one API: AWS's defaults, overridden by its template's GatewayResponses."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self._overrides = {str(name): dict(spec) for name, spec in (overrides or {}).items()}

    def answer(
        self, refusal: Refusal, request_id: str, request_header: Callable[[str], str | None] = lambda _: None
    ) -> GatewayAnswer:
        override = self._override_for(refusal)
        status = int(override.get("StatusCode") or refusal.status)
        values = {
            "error.message": refusal.message,
            "error.messageString": json.dumps(refusal.message),
            "error.responseType": refusal.type.value,
            # JSON-escaped but not quoted, so a template puts it between quotes (docs/template-notes.md).
            "error.validationErrorString": json.dumps(refusal.validation_errors)[1:-1],
            "requestId": request_id,
        }
        templates = override.get("ResponseTemplates") or {}
        template = templates.get("application/json") or next(iter(templates.values()), None)
        if template is None:
            body = '{"message":' + values["error.messageString"] + "}"
        else:
            body = _CONTEXT_VARIABLE.sub(lambda found: values.get(found.group(1), ""), str(template))
        headers = {"Content-Type": "application/json"}
        if refusal.amzn_error_type:
            headers["x-amzn-ErrorType"] = refusal.amzn_error_type
        headers.update(_headers(override.get("ResponseParameters") or {}, request_header))
        return GatewayAnswer(status=status, headers=headers, body=body.encode())

    def _override_for(self, refusal: Refusal) -> dict[str, Any]:
        if refusal.type.value in self._overrides:
            return self._overrides[refusal.type.value]
        fallback = "DEFAULT_5XX" if refusal.status >= HTTPStatus.INTERNAL_SERVER_ERROR else "DEFAULT_4XX"
        return self._overrides.get(fallback, {})


def _headers(parameters: dict[str, Any], request_header: Callable[[str], str | None]) -> dict[str, str]:
    """SAM's ResponseParameters.Headers: static values in single quotes, or a request header to copy."""
    headers = {}
    for name, source in (parameters.get("Headers") or {}).items():
        text = str(source)
        if len(text) >= 2 and text.startswith("'") and text.endswith("'"):
            headers[str(name)] = text[1:-1]
        elif text.startswith(_REQUEST_HEADER):
            value = request_header(text.removeprefix(_REQUEST_HEADER))
            if value is not None:
                headers[str(name)] = value
    return headers
