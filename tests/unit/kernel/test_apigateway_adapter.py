"""The API Gateway adapter's requests, pinned against botocore's service model with Stubber, and its
translation of AWS errors into domain errors."""

import pytest
from botocore.stub import Stubber

from core.adapters.apigateway import ApiGateway, is_key_ceiling
from core.errors import ApiKeyCeilingReached, KeyAlreadyInPlan, ManagementApiThrottled, NotFound


def test_keys_are_created_disabled_and_tagged(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "create_api_key",
        {"id": "k1", "value": "secret-value-0123456789", "enabled": False},
        {"name": "stack-p_1", "enabled": False, "tags": {"metered-ai:stack": "stack"}},
    )

    key = gateway.create_disabled_key("stack-p_1", {"metered-ai:stack": "stack"})

    assert key.id == "k1"
    assert key.value.get_secret_value() == "secret-value-0123456789"
    assert "secret-value" not in repr(key)


def test_attach_enable_and_read_use_the_documented_shapes(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "create_usage_plan_key",
        {"id": "k1", "type": "API_KEY"},
        {"usagePlanId": "plan1", "keyId": "k1", "keyType": "API_KEY"},
    )
    stubber.add_response(
        "update_api_key",
        {"id": "k1", "enabled": True},
        {"apiKey": "k1", "patchOperations": [{"op": "replace", "path": "/enabled", "value": "true"}]},
    )
    stubber.add_response("get_api_key", {"id": "k1", "value": "v"}, {"apiKey": "k1", "includeValue": True})

    gateway.attach_key("plan1", "k1")
    gateway.enable_key("k1")
    assert gateway.read_key_value("k1") == "v"


def test_usage_plans_map_throttle_and_quota(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "get_usage_plans",
        {
            "items": [
                {
                    "id": "p1",
                    "name": "stack-free",
                    "throttle": {"rateLimit": 5.0, "burstLimit": 10},
                    "quota": {"limit": 1000, "period": "DAY", "offset": 0},
                }
            ]
        },
        {"limit": 500},
    )

    [plan] = gateway.list_usage_plans()

    assert (plan.id, plan.name) == ("p1", "stack-free")
    assert plan.limits.rate_limit == 5.0
    assert plan.limits.quota_period == "DAY"


@pytest.mark.parametrize(
    ("code", "status", "domain_error"),
    [
        ("ConflictException", 409, KeyAlreadyInPlan),
        ("NotFoundException", 404, NotFound),
        ("TooManyRequestsException", 429, ManagementApiThrottled),
    ],
)
def test_aws_errors_become_domain_errors(
    stubbed: tuple[ApiGateway, Stubber], code: str, status: int, domain_error: type[Exception]
) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("create_usage_plan_key", service_error_code=code, http_status_code=status)

    with pytest.raises(domain_error):
        gateway.attach_key("plan1", "k1")


def test_deleting_a_key_that_is_already_gone_is_not_an_error(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("delete_api_key", service_error_code="NotFoundException", http_status_code=404)

    gateway.delete_key("gone")


CEILING = "Maximum number of API Keys for this account has been reached."


@pytest.mark.parametrize(
    ("code", "message", "ceiling"),
    [
        ("LimitExceededException", CEILING, True),
        ("LimitExceededException", "ApiKey limit exceeded", True),
        ("LimitExceededException", "Rate exceeded", False),
        ("LimitExceededException", "Maximum number of Resources for this API has been reached.", False),
        ("TooManyRequestsException", "Too Many Requests", False),
        ("BadRequestException", "API Key value too short", False),
    ],
)
def test_the_key_ceiling_is_told_apart_from_rate_limits_by_its_message(code: str, message: str, ceiling: bool) -> None:
    assert is_key_ceiling({"Code": code, "Message": message}) is ceiling


def test_a_key_refused_at_the_ceiling_is_a_domain_error(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error(
        "create_api_key", service_error_code="LimitExceededException", service_message=CEILING, http_status_code=429
    )

    with pytest.raises(ApiKeyCeilingReached, match="limit of API keys"):
        gateway.create_disabled_key("stack-p_1", {"metered-ai:stack": "stack"})


def test_a_rate_limit_exceeded_after_retries_is_throttling(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error(
        "create_api_key",
        service_error_code="LimitExceededException",
        service_message="Rate exceeded",
        http_status_code=429,
    )

    with pytest.raises(ManagementApiThrottled):
        gateway.create_disabled_key("stack-p_1", {"metered-ai:stack": "stack"})


def test_api_keys_are_counted_page_by_page_without_their_values(stubbed: tuple[ApiGateway, Stubber]) -> None:
    # Given an account whose keys fill two pages of GetApiKeys
    gateway, stubber = stubbed
    stubber.add_response(
        "get_api_keys", {"items": [{"id": f"k{n}"} for n in range(500)], "position": "p2"}, {"limit": 500}
    )
    stubber.add_response("get_api_keys", {"items": [{"id": "k500"}]}, {"limit": 500, "position": "p2"})

    # When they are counted, then every page is read, each request without includeValues (Stubber checks the
    # exact parameters)
    assert gateway.count_api_keys() == 501
