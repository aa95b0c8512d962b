"""The one place HTTP answers are made: each domain error's status, code and Retry-After, in two shapes, and a
resolver per shape whose exception handlers are registered here, once, for every handler.

- Control plane (POST /signup, GET /signup/confirm, POST /webhooks/billing, /admin/*): `{"error": {"code", "message",
  "details"?}}`.
- OpenAI-compatible routes (/v1/*): OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`; OpenAI's
  SDKs pick the exception class by status and read `message`.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response

from core.errors import (
    ApiKeyCeilingReached,
    ApiKeyMissing,
    ConfirmationLinkInvalid,
    DomainError,
    EmailAlreadyRegistered,
    ExportTooLarge,
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
    OperatorUnknown,
    PartnerDisabled,
    PartnerNotActive,
    PartnerNotFound,
    PartnerNotFoundYet,
    PartnerRevoked,
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
from core.observability import logger

# Retry-After: a number of seconds, or the error's own `retry_after_seconds`.
RetryAfter = int | Literal["from error"] | None
FROM_ERROR: Literal["from error"] = "from error"


@dataclass(frozen=True)
class ControlPlaneAnswer:
    status: HTTPStatus
    code: str
    retry_after: RetryAfter = None
    # A 5xx says "internal error", unless its message tells the caller what to do.
    tells_caller: bool = False
    # Refusals worth an operator's look (a forged signature) log at WARNING; other 4xx at INFO.
    warns: bool = False


@dataclass(frozen=True)
class OpenAIAnswer:
    status: HTTPStatus
    error_type: str
    code: str | None
    retry_after: RetryAfter = None
    # The error's own words are logged, not sent, where they can name internal model ids and accounts.
    message: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


CONTROL_PLANE: dict[type[DomainError], ControlPlaneAnswer] = {
    InvalidRequest: ControlPlaneAnswer(HTTPStatus.BAD_REQUEST, "invalid_request"),
    UnknownTier: ControlPlaneAnswer(HTTPStatus.BAD_REQUEST, "unknown_tier"),
    TierNotSelfService: ControlPlaneAnswer(HTTPStatus.FORBIDDEN, "tier_not_self_service"),
    EmailAlreadyRegistered: ControlPlaneAnswer(HTTPStatus.CONFLICT, "email_already_registered"),
    SignupInProgress: ControlPlaneAnswer(HTTPStatus.CONFLICT, "signup_in_progress", FROM_ERROR),
    IdempotencyKeyReused: ControlPlaneAnswer(HTTPStatus.UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    ConfirmationLinkInvalid: ControlPlaneAnswer(HTTPStatus.NOT_FOUND, "confirmation_link_invalid"),
    IdempotentRequestInProgress: ControlPlaneAnswer(HTTPStatus.CONFLICT, "request_in_progress", 1),
    ManagementApiThrottled: ControlPlaneAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "throttled", 1),
    SignupThrottled: ControlPlaneAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "throttled", FROM_ERROR, tells_caller=True),
    # No Retry-After: the account's key ceiling does not lift with time, only when an operator deletes keys.
    ApiKeyCeilingReached: ControlPlaneAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "capacity_exhausted", tells_caller=True),
    KeyAlreadyInPlan: ControlPlaneAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    NotFound: ControlPlaneAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    # The billing webhook (POST /webhooks/billing).
    MalformedSignature: ControlPlaneAnswer(HTTPStatus.BAD_REQUEST, "malformed_signature", warns=True),
    InvalidSignature: ControlPlaneAnswer(HTTPStatus.UNAUTHORIZED, "invalid_signature", warns=True),
    PayloadTooLarge: ControlPlaneAnswer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request_too_large"),
    UnprocessableEvent: ControlPlaneAnswer(HTTPStatus.UNPROCESSABLE_ENTITY, "unprocessable_event"),
    PartnerNotFoundYet: ControlPlaneAnswer(HTTPStatus.CONFLICT, "partner_not_found_yet", FROM_ERROR),
    TierChangeInProgress: ControlPlaneAnswer(HTTPStatus.CONFLICT, "change_in_progress", FROM_ERROR),
    TierChangeFailed: ControlPlaneAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "tier_change_failed", 30),
    SigningSecretUnavailable: ControlPlaneAnswer(HTTPStatus.SERVICE_UNAVAILABLE, "signing_secret_unavailable", 30),
    # The operator console (/admin/*).
    OperatorUnknown: ControlPlaneAnswer(HTTPStatus.FORBIDDEN, "operator_unknown", warns=True),
    PartnerNotFound: ControlPlaneAnswer(HTTPStatus.NOT_FOUND, "partner_not_found"),
    PartnerNotActive: ControlPlaneAnswer(HTTPStatus.CONFLICT, "partner_not_active"),
    PartnerRevoked: ControlPlaneAnswer(HTTPStatus.CONFLICT, "partner_revoked"),
    ExportTooLarge: ControlPlaneAnswer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "export_too_large"),
}
CONTROL_PLANE_FAILURE = ControlPlaneAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error")

OPENAI: dict[type[DomainError], OpenAIAnswer] = {
    InvalidRequest: OpenAIAnswer(HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request"),
    UpstreamRejected: OpenAIAnswer(HTTPStatus.BAD_REQUEST, "invalid_request_error", "upstream_rejected"),
    ApiKeyMissing: OpenAIAnswer(HTTPStatus.UNAUTHORIZED, "authentication_error", "missing_api_key"),
    KeyNotRegistered: OpenAIAnswer(HTTPStatus.FORBIDDEN, "permission_error", "key_not_registered"),
    PartnerDisabled: OpenAIAnswer(HTTPStatus.FORBIDDEN, "permission_error", "partner_disabled"),
    ModelNotInTier: OpenAIAnswer(HTTPStatus.FORBIDDEN, "permission_error", "model_not_in_tier", param="model"),
    ModelNotFound: OpenAIAnswer(HTTPStatus.NOT_FOUND, "invalid_request_error", "model_not_found", param="model"),
    # OpenAI's SDKs retry every 429 unless told not to: a spent budget does not come back in seconds.
    TokenBudgetExceeded: OpenAIAnswer(
        HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota", headers={"x-should-retry": "false"}
    ),
    UpstreamThrottled: OpenAIAnswer(
        HTTPStatus.TOO_MANY_REQUESTS, "rate_limit_error", "upstream_rate_limited", FROM_ERROR
    ),
    UpstreamFailed: OpenAIAnswer(
        HTTPStatus.BAD_GATEWAY,
        "server_error",
        "upstream_error",
        message="the model provider failed to answer; nothing was charged, retry later",
    ),
    UpstreamTimedOut: OpenAIAnswer(HTTPStatus.GATEWAY_TIMEOUT, "server_error", "upstream_timeout"),
    ProviderMisconfigured: OpenAIAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
    TierPolicyMissing: OpenAIAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error"),
}
OPENAI_FAILURE = OpenAIAnswer(HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error")

INTERNAL_ERROR = "internal error"


def answer_for[A](exc: DomainError, table: dict[type[DomainError], A], default: A) -> A:
    """The answer of the most specific error class `exc` is (a subclass's entry before its base's)."""
    return next((table[kind] for kind in type(exc).__mro__ if kind in table), default)


def _retry_after(rule: RetryAfter, exc: DomainError) -> dict[str, str]:
    if rule is None:
        return {}
    seconds = getattr(exc, "retry_after_seconds", 1) if rule == FROM_ERROR else rule
    return {"Retry-After": str(seconds)}


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
    """The control-plane answer to a domain error."""
    answer = answer_for(exc, CONTROL_PLANE, CONTROL_PLANE_FAILURE)
    message = exc.message if answer.status < HTTPStatus.INTERNAL_SERVER_ERROR or answer.tells_caller else INTERNAL_ERROR
    details = exc.details if isinstance(exc, InvalidRequest) else None
    return error_response(answer.status, answer.code, message, details, _retry_after(answer.retry_after, exc) or None)


def openai_error_body(
    error_type: str, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_error_response(
    status: HTTPStatus,
    error_type: str,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    return json_response(status, openai_error_body(error_type, message, param=param, code=code), headers)


@dataclass(frozen=True)
class OpenAIError:
    """An OpenAI-shaped error answer, for any transport: a Powertools Response, the streaming function's ASGI
    answer, or (status aside) an error frame inside a stream."""

    status: HTTPStatus
    body: dict[str, Any]
    headers: dict[str, str]


# What an unexpected failure answers on a /v1/* route.
OPENAI_INTERNAL_ERROR = OpenAIError(
    HTTPStatus.INTERNAL_SERVER_ERROR, openai_error_body("server_error", INTERNAL_ERROR, code="internal_error"), {}
)


def openai_error(exc: DomainError) -> OpenAIError:
    """The OpenAI-shaped answer to a domain error on a /v1/* route."""
    answer = answer_for(exc, OPENAI, OPENAI_FAILURE)
    message = INTERNAL_ERROR if answer.status == HTTPStatus.INTERNAL_SERVER_ERROR else answer.message or exc.message
    param = answer.param or (exc.param if isinstance(exc, InvalidRequest) else None)
    headers = answer.headers | _retry_after(answer.retry_after, exc) | exc.headers
    body = openai_error_body(answer.error_type, message, param=param, code=answer.code)
    return OpenAIError(answer.status, body, headers)


def openai_domain_error_response(exc: DomainError) -> Response[str]:
    """The OpenAI-shaped answer to a domain error on a /v1/* route."""
    error = openai_error(exc)
    return json_response(error.status, error.body, error.headers or None)


def log_openai_refusal(exc: DomainError, status: HTTPStatus, refused: str) -> None:
    """The log line of a domain error answered on a /v1/* route: the error's own words (perhaps the provider's)
    are for operators, never sent to the caller."""
    _log(status, refused, refused, exc)


# Called with each domain error a route raised and the status it is answered with (a handler's own metrics).
OnRefusal = Callable[[DomainError, HTTPStatus], None]


def control_plane_app(refused: str, failed: str, on_refusal: OnRefusal | None = None) -> APIGatewayRestResolver:
    """A resolver answering in the control-plane shape. `refused`/`failed`: the log lines of a domain error and
    of an unexpected one ("refused signup", "signup failed")."""
    app = APIGatewayRestResolver()

    def on_domain_error(exc: DomainError) -> Response[str]:
        answer = answer_for(exc, CONTROL_PLANE, CONTROL_PLANE_FAILURE)
        if on_refusal is not None:
            on_refusal(exc, answer.status)
        _log(answer.status, refused, failed, exc, warns=answer.warns)
        return domain_error_response(exc)

    def on_unexpected_error(exc: Exception) -> Response[str]:
        logger.exception(failed)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", INTERNAL_ERROR)

    app.exception_handler(DomainError)(on_domain_error)
    app.exception_handler(Exception)(on_unexpected_error)
    return app


def openai_app(refused: str, failed: str) -> APIGatewayRestResolver:
    """A resolver answering in OpenAI's shape (the /v1/* routes)."""
    app = APIGatewayRestResolver()

    def on_domain_error(exc: DomainError) -> Response[str]:
        response = openai_domain_error_response(exc)
        log_openai_refusal(exc, HTTPStatus(response.status_code), refused)
        return response

    def on_unexpected_error(exc: Exception) -> Response[str]:
        logger.exception(failed)
        return json_response(OPENAI_INTERNAL_ERROR.status, OPENAI_INTERNAL_ERROR.body)

    app.exception_handler(DomainError)(on_domain_error)
    app.exception_handler(Exception)(on_unexpected_error)
    return app


def _log(status: HTTPStatus, refused: str, failed: str, exc: DomainError, *, warns: bool = False) -> None:
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.error(failed, reason=type(exc).__name__, error=exc.message)
    elif warns:
        logger.warning(refused, reason=type(exc).__name__, error=exc.message)
    else:
        logger.info(refused, reason=type(exc).__name__, error=exc.message)
