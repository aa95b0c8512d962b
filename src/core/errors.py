"""Domain errors. Adapters turn AWS errors into these; `core.http_errors` maps them to HTTP answers."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    """The request is malformed or fails validation."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


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
