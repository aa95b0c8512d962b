"""The one mapping from domain errors to HTTP answers: `{"error": {"code", "message", "details"?}}`."""

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import ValidationError

from core.errors import (
    DomainError,
    EmailAlreadyRegistered,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    InvalidRequest,
    KeyAlreadyInPlan,
    ManagementApiThrottled,
    NotFound,
    SignupInProgress,
    TierNotSelfService,
    UnknownTier,
)

_STATUS: dict[type[DomainError], tuple[HTTPStatus, str]] = {
    InvalidRequest: (HTTPStatus.BAD_REQUEST, "invalid_request"),
    UnknownTier: (HTTPStatus.BAD_REQUEST, "unknown_tier"),
    TierNotSelfService: (HTTPStatus.FORBIDDEN, "tier_not_self_service"),
    EmailAlreadyRegistered: (HTTPStatus.CONFLICT, "email_already_registered"),
    SignupInProgress: (HTTPStatus.CONFLICT, "signup_in_progress"),
    IdempotencyKeyReused: (HTTPStatus.UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    IdempotentRequestInProgress: (HTTPStatus.CONFLICT, "request_in_progress"),
    ManagementApiThrottled: (HTTPStatus.SERVICE_UNAVAILABLE, "throttled"),
    KeyAlreadyInPlan: (HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    NotFound: (HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
}


def json_response(status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body), headers=headers
    )


def error_response(
    status: HTTPStatus,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response(status, {"error": error}, headers)


def domain_error_response(exc: DomainError) -> Response[str]:
    status, code = next(
        (mapped for kind, mapped in _STATUS.items() if isinstance(exc, kind)),
        (HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    )
    message = exc.message if status < HTTPStatus.INTERNAL_SERVER_ERROR else "internal error"
    headers = None
    if isinstance(exc, SignupInProgress):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, ManagementApiThrottled | IdempotentRequestInProgress):
        headers = {"Retry-After": "1"}
    details = exc.details if isinstance(exc, InvalidRequest) else None
    return error_response(status, code, message, details, headers)


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """Turn pydantic's errors into one message per field, without echoing the input back."""
    if any(error["type"] == "json_invalid" for error in exc.errors()):
        return InvalidRequest("request body is not valid JSON")
    details = [
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "message": _field_message(error)}
        for error in exc.errors()
    ]
    return InvalidRequest("request body is invalid", details)


def _field_message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unexpected field"
    if error["type"] == "missing":
        return "field required"
    if error["type"] == "model_type":
        return "request body must be a JSON object"
    return str(error["msg"])
