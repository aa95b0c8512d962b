"""Domain errors. Adapters turn AWS errors into these; `handlers.http_answers` maps them to HTTP answers."""

from typing import Any

from pydantic import ValidationError


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Headers its answer also carries, set by the service that knows the caller (OpenAI's x-ratelimit-*).
        self.headers: dict[str, str] = {}


class InvalidRequest(DomainError):
    """The request is malformed or fails validation."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.details = details or []
        self.param = param  # the offending field, for OpenAI-shaped errors (`error.param`)


class UnknownTier(DomainError):
    def __init__(self, tier: str, valid: list[str]) -> None:
        super().__init__(f"unknown tier {tier!r}; valid tiers: {', '.join(valid)}")
        self.valid = valid


class TierNotSelfService(DomainError):
    def __init__(self, tier: str, allowed: list[str]) -> None:
        super().__init__(
            f"tier {tier!r} cannot be chosen at signup; self-service tiers: {', '.join(allowed)}. "
            "Paid tiers are assigned through billing."
        )
        self.allowed = allowed


class EmailAlreadyRegistered(DomainError):
    def __init__(self) -> None:
        super().__init__("this email is already registered")


class SignupInProgress(DomainError):
    """Another signup for the same email holds the lease; the caller may retry after it expires."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"a signup for this email is in progress; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class ConfirmationLinkInvalid(DomainError):
    def __init__(self) -> None:
        super().__init__("this confirmation link is unknown, already used or expired")


class IdempotencyKeyReused(DomainError):
    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used with a different request body")


class IdempotentRequestInProgress(DomainError):
    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in progress; retry shortly")


class KeyAlreadyInPlan(DomainError):
    """API Gateway allows a key in one usage plan per API stage (ConflictException)."""


class NotFound(DomainError):
    """A usage plan or API key the domain expected does not exist."""


class ManagementApiThrottled(DomainError):
    """API Gateway's management API kept throttling (TooManyRequestsException) after botocore's retries."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"API Gateway throttled {operation}; retry later")


class ApiKeyCeilingReached(DomainError):
    """API Gateway refused a new API key: the account holds as many as the Region allows (10,000, a quota
    that cannot be raised). Not retried: nothing frees a key but deleting one. Signup and key import answer
    503 `capacity_exhausted` at once."""

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"no new API keys can be issued: API Gateway refused {operation} because this AWS account has "
            "reached its limit of API keys in this Region (10,000, which AWS does not raise). Nothing was "
            'issued. Operators: delete unused keys to make room (README, "Capacity")'
        )


class SignupSweepFailed(DomainError):
    """A sweep run could not clean up every failed signup it found; raised at the end of the run (the rest was
    done), so Lambda's retries and the DLQ see it."""


class ManagementApiOutOfTime(DomainError):
    """A management-API call (or botocore's retry of it) could not finish before the caller's deadline."""

    def __init__(self) -> None:
        super().__init__("no time left for another API Gateway management call")


class SignupThrottled(DomainError):
    """Signup gave up inside its time budget (API Gateway's management API is throttling): nothing was
    issued, and the caller should send the same request again after `retry_after_seconds`."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "too many signups at once: no key was issued to you. Send the same request again (with the same "
            f"Idempotency-Key, if you used one) in {retry_after_seconds} s"
        )
        self.retry_after_seconds = retry_after_seconds


# --- Tier-change webhook -------------------------------------------------------------------------------


class InvalidSignature(DomainError):
    """A webhook whose signature is missing, malformed, does not verify, or is outside the timestamp tolerance."""


class MalformedSignature(InvalidSignature):
    """Signature headers that do not parse (one numeric timestamp, signatures in the scheme's syntax): answered 400."""


class SigningSecretUnavailable(DomainError):
    """No signing secret is configured for the webhook's scheme, or the secret cannot be read."""


class PayloadTooLarge(DomainError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body is larger than {limit_bytes} bytes")


class UnprocessableEvent(DomainError):
    """A verified billing event we cannot apply as sent (no price maps to a tier, an unknown tier...)."""


class PartnerNotFoundYet(DomainError):
    """A billing event for a partner we do not know (yet): recorded, and the sender should retry."""

    def __init__(self, partner_ref: str, retry_after_seconds: int) -> None:
        super().__init__(
            f"no partner matches {partner_ref} yet; the event is recorded, retry in {retry_after_seconds} s"
        )
        self.retry_after_seconds = retry_after_seconds


class TierChangeInProgress(DomainError):
    """Another billing event for the same partner is being applied; the sender should retry shortly."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"another change for this partner is in progress; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class TierChangeFailed(DomainError):
    """API Gateway refused part of a plan change; the key was put back on its old plan and nothing changed."""


# --- AI API (OpenAI-compatible routes) ---------------------------------------------------------------


class ApiKeyMissing(DomainError):
    """The request context carries no API key id (API Gateway always sets one on a key-required route)."""

    def __init__(self) -> None:
        super().__init__("no API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`")


class KeyNotRegistered(DomainError):
    """API Gateway accepted the key, but no partner owns it (a key made by hand, or a signup undone)."""

    def __init__(self) -> None:
        super().__init__("this API key is not registered to a partner")


class PartnerDisabled(DomainError):
    def __init__(self) -> None:
        super().__init__("this partner account is disabled")


class TierPolicyMissing(DomainError):
    """A partner's tier has no entry in the AI functions' TIERS: a deployment error, not the caller's."""

    def __init__(self, tier: str) -> None:
        super().__init__(f"tier {tier!r} has no AI API policy (TIERS)")


class ModelNotFound(DomainError):
    def __init__(self, model: str) -> None:
        super().__init__(f"the model {model!r} does not exist")
        self.model = model


class ModelNotInTier(DomainError):
    def __init__(self, model: str, tier: str, allowed: list[str]) -> None:
        super().__init__(
            f"the model {model!r} is not available on the {tier} tier; models of this tier: {', '.join(allowed)}"
        )
        self.model = model


class TokenBudgetExceeded(DomainError):
    """The request's token reservation does not fit in what is left of the key's budget for the period."""

    def __init__(self, needed: int, remaining: int, resets_at: str) -> None:
        super().__init__(
            f"token budget exhausted for this period: this request reserves {needed} tokens (prompt estimate + "
            f"max_tokens) and {remaining} remain; lower max_tokens, or wait until {resets_at}"
        )
        self.needed = needed
        self.remaining = remaining


class UpstreamRejected(DomainError):
    """The model provider refused the request as invalid (too long for the model, a bad parameter...)."""


class UpstreamThrottled(DomainError):
    def __init__(self, retry_after_seconds: int = 1) -> None:
        super().__init__("the model provider is rate limiting requests; retry shortly")
        self.retry_after_seconds = retry_after_seconds


class UpstreamFailed(DomainError):
    """The model provider failed or answered something we cannot use."""


class UpstreamTimedOut(DomainError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the model did not answer within {seconds:g} s")


class ProviderMisconfigured(DomainError):
    """The deployment's model provider cannot be used as configured (no base URL, unreadable secret...)."""


class EmailRejected(DomainError):
    """SES refused a message for good (an unverified sender or recipient, a suppressed address): not retried."""


class QuotaMonitorRunFailed(DomainError):
    """A quota monitor run finished with plans it could not read or alerts it could not deliver. Raised at the
    end of the run (everything else was evaluated and alerted), so Lambda's retry policy and the DLQ see it."""


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


# --- The operator console (/admin/*) -----------------------------------------------------------------------------


class OperatorUnknown(DomainError):
    """A call to /admin/* without an IAM principal in its request context (API Gateway's AWS_IAM authorization
    always sets one: a missing one means the route is misconfigured, so the function refuses)."""

    def __init__(self) -> None:
        super().__init__("this operation needs a caller authenticated by AWS IAM (a SigV4-signed request)")


class ExportTooLarge(DomainError):
    """A usage export that does not fit in one HTTP answer (Lambda's 6 MB): the scheduled export has it in S3."""

    def __init__(self, size: int, limit: int, where: str) -> None:
        super().__init__(
            f"the export is {size} bytes, more than one answer carries ({limit}); read it from the scheduled "
            f"export instead: {where}"
        )


class PartnerNotFound(DomainError):
    def __init__(self, partner_id: str) -> None:
        super().__init__(f"no partner with id {partner_id}")


class PartnerNotActive(DomainError):
    """The operation needs an active partner (an extension for a suspended or revoked one is refused)."""

    def __init__(self, partner_id: str, status: str, operation: str) -> None:
        super().__init__(f"partner {partner_id} is {status}: {operation} needs an active partner (resume it first)")


class PartnerRevoked(DomainError):
    """The partner's key is revoked (deleted): only a re-issue gives it one again."""

    def __init__(self, partner_id: str, operation: str) -> None:
        super().__init__(f"partner {partner_id}'s key is revoked: {operation} needs a key (re-issue one first)")
