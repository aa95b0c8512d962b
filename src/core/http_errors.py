"""The one mapping from domain errors to HTTP answers: `{"error": {"code", "message", "details"?}}`, and for the
OpenAI-compatible routes (`/v1/*`) OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`."""

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import ValidationError

from core.errors import (
    ApiKeyMissing,
    ConfirmationLinkInvalid,
    DomainError,
    EmailAlreadyRegistered,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    InvalidRequest,
    InvalidSignature,
    KeyAlreadyInPlan,
    KeyNotRegistered,
    MalformedSignature,
    ManagementApiThrottled,
    ModelNotFound,
    ModelNotInTier,
    NotFound,
    PartnerDisabled,
    PartnerNotFoundYet,
    PayloadTooLarge,
    ProviderMisconfigured,
    SigningSecretUnavailable,
    SignupInProgress,
    SignupThrottled,
    TierChangeFailed,
    TierChangeInProgress,
    TierNotSelfService,
    TierPolicyMissing,
    TokenBudgetExceeded,
    UnknownTier,
    UnprocessableEvent,
    UpstreamFailed,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamTimedOut,
)

_STATUS: dict[type[DomainError], tuple[HTTPStatus, str]] = {
    InvalidRequest: (HTTPStatus.BAD_REQUEST, "invalid_request"),
    UnknownTier: (HTTPStatus.BAD_REQUEST, "unknown_tier"),
    TierNotSelfService: (HTTPStatus.FORBIDDEN, "tier_not_self_service"),
    EmailAlreadyRegistered: (HTTPStatus.CONFLICT, "email_already_registered"),
    SignupInProgress: (HTTPStatus.CONFLICT, "signup_in_progress"),
    IdempotencyKeyReused: (HTTPStatus.UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    ConfirmationLinkInvalid: (HTTPStatus.NOT_FOUND, "confirmation_link_invalid"),
    IdempotentRequestInProgress: (HTTPStatus.CONFLICT, "request_in_progress"),
    ManagementApiThrottled: (HTTPStatus.SERVICE_UNAVAILABLE, "throttled"),
    SignupThrottled: (HTTPStatus.SERVICE_UNAVAILABLE, "throttled"),
    KeyAlreadyInPlan: (HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    NotFound: (HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    # The billing webhook (POST /webhooks/billing). MalformedSignature before InvalidSignature, its base.
    MalformedSignature: (HTTPStatus.BAD_REQUEST, "malformed_signature"),
    InvalidSignature: (HTTPStatus.UNAUTHORIZED, "invalid_signature"),
    PayloadTooLarge: (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request_too_large"),
    UnprocessableEvent: (HTTPStatus.UNPROCESSABLE_ENTITY, "unprocessable_event"),
    PartnerNotFoundYet: (HTTPStatus.CONFLICT, "partner_not_found_yet"),
    TierChangeInProgress: (HTTPStatus.CONFLICT, "change_in_progress"),
    TierChangeFailed: (HTTPStatus.SERVICE_UNAVAILABLE, "tier_change_failed"),
    SigningSecretUnavailable: (HTTPStatus.SERVICE_UNAVAILABLE, "signing_secret_unavailable"),
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
    # A 5xx says "internal error", unless its message tells the caller what to do.
    message = (
        exc.message
        if status < HTTPStatus.INTERNAL_SERVER_ERROR or isinstance(exc, SignupThrottled)
        else ("internal error")
    )
    headers = None
    if isinstance(exc, SignupInProgress | SignupThrottled):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, ManagementApiThrottled | IdempotentRequestInProgress):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, PartnerNotFoundYet | TierChangeInProgress):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    elif isinstance(exc, TierChangeFailed | SigningSecretUnavailable):
        headers = {"Retry-After": "30"}
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


# --- OpenAI-compatible routes (/v1/*) ----------------------------------------------------------------
# (status, OpenAI error type, code). OpenAI's SDKs pick the exception class by status and read `message`.
_OPENAI: dict[type[DomainError], tuple[HTTPStatus, str, str | None]] = {
    InvalidRequest: (HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request"),
    UpstreamRejected: (HTTPStatus.BAD_REQUEST, "invalid_request_error", "upstream_rejected"),
    ApiKeyMissing: (HTTPStatus.UNAUTHORIZED, "authentication_error", "missing_api_key"),
    KeyNotRegistered: (HTTPStatus.FORBIDDEN, "permission_error", "key_not_registered"),
    PartnerDisabled: (HTTPStatus.FORBIDDEN, "permission_error", "partner_disabled"),
    ModelNotInTier: (HTTPStatus.FORBIDDEN, "permission_error", "model_not_in_tier"),
    ModelNotFound: (HTTPStatus.NOT_FOUND, "invalid_request_error", "model_not_found"),
    TokenBudgetExceeded: (HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota"),
    UpstreamThrottled: (HTTPStatus.TOO_MANY_REQUESTS, "rate_limit_error", "upstream_rate_limited"),
    UpstreamFailed: (HTTPStatus.BAD_GATEWAY, "server_error", "upstream_error"),
    UpstreamTimedOut: (HTTPStatus.GATEWAY_TIMEOUT, "server_error", "upstream_timeout"),
    ProviderMisconfigured: (HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
    TierPolicyMissing: (HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
}
# The model provider's own words are logged, not sent: they can name internal model ids and accounts.
_OPENAI_MESSAGES: dict[type[DomainError], str] = {
    UpstreamFailed: "the model provider failed to answer; nothing was charged, retry later",
}


def openai_error_response(
    status: HTTPStatus,
    error_type: str,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return json_response(status, body, headers)


def openai_domain_error_response(exc: DomainError) -> Response[str]:
    """The OpenAI-shaped answer to a domain error on a /v1/* route."""
    status, error_type, code = next(
        (mapped for kind, mapped in _OPENAI.items() if isinstance(exc, kind)),
        (HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
    )
    message = next((text for kind, text in _OPENAI_MESSAGES.items() if isinstance(exc, kind)), exc.message)
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        message = "internal error"
    param = exc.param if isinstance(exc, InvalidRequest) else None
    if isinstance(exc, ModelNotFound | ModelNotInTier):
        param = "model"
    headers: dict[str, str] = {}
    if isinstance(exc, TokenBudgetExceeded):
        # OpenAI's SDKs retry every 429 unless told not to: a spent budget does not come back in seconds.
        headers["x-should-retry"] = "false"
    elif isinstance(exc, UpstreamThrottled):
        headers["Retry-After"] = str(exc.retry_after_seconds)
    return openai_error_response(status, error_type, message, param=param, code=code, headers=headers or None)
