"""API Gateway adapter: usage plans and API keys through the management API."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import SecretStr

from core.aws import apigateway_client
from core.errors import KeyAlreadyInPlan, ManagementApiThrottled, NotFound
from core.models import IssuedKey, TierLimits, UsagePlan

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient


@contextmanager
def _translated_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "TooManyRequestsException":
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


class ApiGateway:
    """The UsagePlanGateway port on API Gateway."""

    def __init__(self, client: "APIGatewayClient | None" = None) -> None:
        self._client = client or apigateway_client()

    def list_usage_plans(self) -> list[UsagePlan]:
        with _translated_errors("GetUsagePlans"):
            pages = self._client.get_paginator("get_usage_plans").paginate(PaginationConfig={"PageSize": 500})
            return [usage_plan_from_api(item) for page in pages for item in page.get("items", [])]

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey:
        # Disabled until it sits in its plan: an enabled key outside any plan is a key we cannot meter.
        with _translated_errors("CreateApiKey"):
            created = self._client.create_api_key(name=name, enabled=False, tags=tags)
        return IssuedKey(id=created["id"], value=SecretStr(created["value"]))

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
        try:
            with _translated_errors("DeleteApiKey"):
                self._client.delete_api_key(apiKey=key_id)
        except NotFound:
            return

    def find_key_ids(self, name: str) -> list[str]:
        # nameQuery matches by prefix; only an exact name is ours.
        with _translated_errors("GetApiKeys"):
            pages = self._client.get_paginator("get_api_keys").paginate(
                nameQuery=name, includeValues=False, PaginationConfig={"PageSize": 500}
            )
            return [item["id"] for page in pages for item in page.get("items", []) if item.get("name") == name]

    def read_key_value(self, key_id: str) -> str:
        with _translated_errors("GetApiKey"):
            return self._client.get_api_key(apiKey=key_id, includeValue=True)["value"]
