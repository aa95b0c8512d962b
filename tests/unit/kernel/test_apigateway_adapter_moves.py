"""The API Gateway adapter's calls for moving keys between plans, pinned against botocore's service model with
Stubber: GetUsagePlans by key, DeleteUsagePlanKey, UpdateApiKey (disable), GetUsage and UpdateUsage."""

from datetime import date

import pytest
from botocore.stub import Stubber

from core.adapters.apigateway import ApiGateway
from core.errors import NotFound
from core.models import DailyUsage


def test_the_plans_of_a_key_are_found_by_key_id(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "get_usage_plans", {"items": [{"id": "plan-free", "name": "stack-free"}]}, {"keyId": "k1", "limit": 500}
    )

    assert gateway.plans_of_key("k1") == ["plan-free"]


def test_detach_and_disable_use_the_documented_shapes(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("delete_usage_plan_key", {}, {"usagePlanId": "plan-free", "keyId": "k1"})
    stubber.add_response(
        "update_api_key",
        {"id": "k1", "enabled": False},
        {"apiKey": "k1", "patchOperations": [{"op": "replace", "path": "/enabled", "value": "false"}]},
    )

    gateway.detach_key("plan-free", "k1")
    gateway.disable_key("k1")


def test_key_usage_reads_one_day_per_entry(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "get_usage",
        {
            "usagePlanId": "plan-pro",
            "startDate": "2026-03-01",
            "endDate": "2026-03-03",
            "items": {"k1": [[10, 990], [0, 990], [5, 985]]},
        },
        {"usagePlanId": "plan-pro", "keyId": "k1", "startDate": "2026-03-01", "endDate": "2026-03-03"},
    )

    usage = gateway.key_usage("plan-pro", "k1", date(2026, 3, 1), date(2026, 3, 3))

    assert usage == [DailyUsage(10, 990), DailyUsage(0, 990), DailyUsage(5, 985)]


def test_a_key_without_usage_has_no_days(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "get_usage",
        {"usagePlanId": "plan-pro", "startDate": "2026-03-01", "endDate": "2026-03-01", "items": {}},
        {"usagePlanId": "plan-pro", "keyId": "k1", "startDate": "2026-03-01", "endDate": "2026-03-01"},
    )

    assert gateway.key_usage("plan-pro", "k1", date(2026, 3, 1), date(2026, 3, 1)) == []


def test_the_remaining_quota_is_set_with_update_usage(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "update_usage",
        {"usagePlanId": "plan-pro", "items": {"k1": [[0, 960]]}},
        {
            "usagePlanId": "plan-pro",
            "keyId": "k1",
            "patchOperations": [{"op": "replace", "path": "/remaining", "value": "960"}],
        },
    )

    gateway.set_remaining_quota("plan-pro", "k1", 960)


def test_detaching_a_key_that_is_not_in_the_plan_is_not_found(stubbed: tuple[ApiGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("delete_usage_plan_key", service_error_code="NotFoundException", http_status_code=404)

    with pytest.raises(NotFound):
        gateway.detach_key("plan-free", "k1")
