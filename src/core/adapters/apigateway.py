"""API Gateway adapter: usage plans and API keys through the management API."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import SecretStr

from core.aws import apigateway_client
from core.errors import (
    ApiKeyCeilingReached,
    KeyAlreadyInPlan,
    KeyValueInUse,
    ManagementApiOutOfTime,
    ManagementApiThrottled,
    NotFound,
)
from core.models import DailyUsage, IssuedKey, TierLimits, UsagePlan
from core.pacing import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient

# GetUsage and GetApiKeys return at most this many keys per page.
GET_USAGE_MAX_PAGE_SIZE = 500
GET_API_KEYS_MAX_PAGE_SIZE = 500


# The operations that create keys, where API Gateway's LimitExceededException can mean the account's key ceiling.
_KEY_CREATING_OPERATIONS = ("CreateApiKey", "ImportApiKeys")


def is_key_ceiling(error: Any) -> bool:
    """Whether a parsed error (`{"Code", "Message"}`) is API Gateway's refusal of a new key at the account's
    API key ceiling. Both that and a rate limit are LimitExceededException (HTTP 429); a quota's message
    names what ran out ("Maximum number of ... has been reached"), so the ceiling is the one naming API keys
    (docs/decisions.md)."""
    message = str(error.get("Message", "")).lower().replace("apikey", "api key")
    return error.get("Code") == "LimitExceededException" and "api key" in message


def _refuse_retry_at_key_ceiling(response: Any = None, operation: Any = None, **_: Any) -> None:
    # botocore's standard mode retries LimitExceededException as throttling; at the ceiling every retry would
    # fail the same way, so stop at the first answer (a needs-retry handler that raises ends the call).
    if response is not None and is_key_ceiling(response[1].get("Error", {})):
        raise ApiKeyCeilingReached(getattr(operation, "name", "CreateApiKey"))


def refuse_retry_at_key_ceiling(client: "APIGatewayClient") -> None:
    """Make `client` raise ApiKeyCeilingReached at the first key-ceiling answer, without botocore's retries."""
    for operation in _KEY_CREATING_OPERATIONS:
        client.meta.events.register_first(
            f"needs-retry.api-gateway.{operation}",
            _refuse_retry_at_key_ceiling,
            unique_id=f"metered-ai-key-ceiling-{operation}",
        )


@contextmanager
def _translated_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if is_key_ceiling(exc.response.get("Error", {})):
            raise ApiKeyCeilingReached(operation) from exc
        if code in ("TooManyRequestsException", "LimitExceededException"):  # a rate limit, after botocore's retries
            raise ManagementApiThrottled(operation) from exc
        if code == "ConflictException":
            raise KeyAlreadyInPlan(f"{operation}: {message}") from exc
        if code == "NotFoundException":
            raise NotFound(f"{operation}: {message}") from exc
        raise


def usage_plan_from_api(item: Any) -> UsagePlan:
    """Map one item of GetUsagePlans to the domain's UsagePlan."""
    throttle = item.get("throttle") or {}
    quota = item.get("quota") or {}
    return UsagePlan(
        id=item["id"],
        name=item.get("name", ""),
        limits=TierLimits(
            rate_limit=throttle.get("rateLimit"),
            burst_limit=throttle.get("burstLimit"),
            quota_limit=quota.get("limit"),
            quota_period=quota.get("period"),
            quota_offset=quota.get("offset", 0),
        ),
    )


# botocore's standard retry mode sleeps up to 2**(attempt - 1) s (with jitter) before attempt `attempt + 1`.
_THROTTLING_CODES = {"TooManyRequestsException", "ThrottlingException", "Throttling"}


def bound_by_deadline(client: "APIGatewayClient", deadline: Callable[[], float | None], attempt_seconds: float) -> None:
    """Make every call of `client`, botocore's retries included, end by `deadline()` (a time.monotonic()
    instant; None: no deadline). An attempt that could not finish in time (`attempt_seconds`: the client's
    connect + read timeouts), or a retry whose backoff could outlast the deadline, raises
    ManagementApiOutOfTime instead of being made."""

    def before_send(**_: Any) -> None:
        end = deadline()
        if end is not None and time.monotonic() + attempt_seconds > end:
            raise ManagementApiOutOfTime()

    def before_retry(response: Any = None, attempts: int = 1, caught_exception: Any = None, **_: Any) -> None:
        end = deadline()
        if end is None or isinstance(caught_exception, ManagementApiOutOfTime):
            return
        throttled = (
            caught_exception is None
            and response is not None
            and not is_key_ceiling(response[1].get("Error", {}))  # never retried: see refuse_retry_at_key_ceiling
            and (
                response[0].status_code == HTTPStatus.TOO_MANY_REQUESTS
                or response[1].get("Error", {}).get("Code") in _THROTTLING_CODES
            )
        )
        if throttled and time.monotonic() + 2 ** (attempts - 1) + attempt_seconds > end:
            raise ManagementApiOutOfTime()

    client.meta.events.register("before-send.api-gateway", before_send)
    # First, so it runs before botocore's own retry handler sleeps.
    client.meta.events.register_first("needs-retry.api-gateway", before_retry)


class ApiGateway:
    """The UsagePlanGateway port on API Gateway."""

    def __init__(self, client: "APIGatewayClient | None" = None, pacer: TokenBucket | None = None) -> None:
        self._client = client or apigateway_client()
        refuse_retry_at_key_ceiling(self._client)
        # A batch caller (the quota monitor) paces itself to its share of the account's management-API pool.
        self._pacer = pacer

    def _pace(self) -> None:
        if self._pacer is not None:
            self._pacer.take()

    def list_usage_plans(self) -> list[UsagePlan]:
        self._pace()
        with _translated_errors("GetUsagePlans"):
            pages = self._client.get_paginator("get_usage_plans").paginate(PaginationConfig={"PageSize": 500})
            return [usage_plan_from_api(item) for page in pages for item in page.get("items", [])]

    def count_api_keys(self) -> int:
        """How many API keys the account holds in the Region, every stack's (GetApiKeys, 500 a page). Never
        with includeValues: the count needs no key value, and its caller must never see one."""
        count, position = 0, None
        while True:
            self._pace()
            request: dict[str, Any] = {"limit": GET_API_KEYS_MAX_PAGE_SIZE}
            if position:
                request["position"] = position
            with _translated_errors("GetApiKeys"):
                page = self._client.get_api_keys(**request)
            count += len(page.get("items", []))
            position = page.get("position")
            if not position:
                return count

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey:
        # Disabled until it sits in its plan: an enabled key outside any plan is a key we cannot meter.
        with _translated_errors("CreateApiKey"):
            created = self._client.create_api_key(name=name, enabled=False, tags=tags)
        return IssuedKey(id=created["id"], value=SecretStr(created["value"]))

    def create_disabled_key_with_value(self, name: str, tags: dict[str, str], value: SecretStr) -> str:
        """A disabled key with a value the caller brings (a key import); its id. KeyValueInUse when another key
        of the account has that value. The value is sent once and never returned, logged or kept."""
        try:
            with _translated_errors("CreateApiKey"):
                created = self._client.create_api_key(
                    name=name, enabled=False, tags=tags, value=value.get_secret_value()
                )
        except KeyAlreadyInPlan as exc:  # CreateApiKey's ConflictException: the value is taken
            raise KeyValueInUse() from exc
        return str(created["id"])

    def attach_key(self, plan_id: str, key_id: str) -> None:
        with _translated_errors("CreateUsagePlanKey"):
            self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")

    def enable_key(self, key_id: str) -> None:
        with _translated_errors("UpdateApiKey"):
            self._client.update_api_key(
                apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}]
            )

    def delete_key(self, key_id: str) -> None:
        """Delete a key (API Gateway drops its plan memberships with it). A key already gone is fine."""
        self._pace()
        try:
            with _translated_errors("DeleteApiKey"):
                self._client.delete_api_key(apiKey=key_id)
        except NotFound:
            return

    def read_key_value(self, key_id: str) -> str:
        with _translated_errors("GetApiKey"):
            return self._client.get_api_key(apiKey=key_id, includeValue=True)["value"]

    def plans_of_key(self, key_id: str) -> list[str]:
        """Ids of the usage plans the key is in (GetUsagePlans filtered by keyId)."""
        with _translated_errors("GetUsagePlans"):
            pages = self._client.get_paginator("get_usage_plans").paginate(
                keyId=key_id, PaginationConfig={"PageSize": 500}
            )
            return [item["id"] for page in pages for item in page.get("items", [])]

    def detach_key(self, plan_id: str, key_id: str) -> None:
        with _translated_errors("DeleteUsagePlanKey"):
            self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)

    def disable_key(self, key_id: str) -> None:
        with _translated_errors("UpdateApiKey"):
            self._client.update_api_key(
                apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
            )

    def key_usage(self, plan_id: str, key_id: str, start: date, end: date) -> list[DailyUsage]:
        """One key's usage in one plan, one entry per UTC day from `start` to `end` inclusive (GetUsage)."""
        with _translated_errors("GetUsage"):
            found = self._client.get_usage(
                usagePlanId=plan_id, keyId=key_id, startDate=start.isoformat(), endDate=end.isoformat()
            )
        # boto3 names the wire's "values" map "items": key id -> [[used, remaining], ...] per day.
        days = found.get("items", {}).get(key_id, [])
        return [DailyUsage(used=int(day[0]), remaining=int(day[1])) for day in days]

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None:
        """Make the key's remaining quota for the current period `remaining` (UpdateUsage)."""
        with _translated_errors("UpdateUsage"):
            self._client.update_usage(
                usagePlanId=plan_id,
                keyId=key_id,
                patchOperations=[{"op": "replace", "path": "/remaining", "value": str(remaining)}],
            )

    def usage_pages(
        self, plan_id: str, start: date, end: date, page_size: int = GET_USAGE_MAX_PAGE_SIZE
    ) -> Iterator[dict[str, list[list[int]]]]:
        """Every key's daily `[used, remaining]` in the plan from `start` to `end` (UTC days, inclusive), one
        GetUsage page at a time: never one call per key."""
        position: str | None = None
        while True:
            self._pace()
            request: dict[str, Any] = {
                "usagePlanId": plan_id,
                "startDate": start.isoformat(),
                "endDate": end.isoformat(),
                "limit": page_size,
            }
            if position:
                request["position"] = position
            with _translated_errors("GetUsage"):
                page = self._client.get_usage(**request)
            # boto3 names the wire's "values" map "items": key id -> [[used, remaining], ...] per day.
            yield {
                key_id: [[int(used), int(left)] for used, left in days]
                for key_id, days in page.get("items", {}).items()
            }
            position = page.get("position")
            if not position:
                return
