"""POST /admin/partners/{id}/extensions in-process on the emulated stack: UpdateUsage on the key's plan and the
ledger's grant together, refused for a held partner, hostile bodies refused, and each AWS call failing once
leaving an honest trail and no ledger grant without the requests."""

import os
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.admin.service import admin_service
from core.periods import period_bounds, period_key
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.faults import fails_once
from tests.integration.admin.conftest import call, sign_up
from tests.operator_topic import operator_messages

pytestmark = pytest.mark.usefixtures("admin_env")


def key_of(partner_id: str) -> str:
    return str(call("GET", f"/admin/partners/{partner_id}").body["partner"]["api_key_id"])


def use(stack: ProvisionedStack, tier: str, key_id: str, requests: int) -> None:
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier[tier], key_id, datetime.now(UTC).date(), requests)


def remaining(stack: ProvisionedStack, tier: str, key_id: str) -> int:
    today = datetime.now(UTC).date().isoformat()
    usage = boto3.client("apigateway").get_usage(
        usagePlanId=stack.plan_ids_by_tier[tier], keyId=key_id, startDate=today, endDate=today
    )
    return int(usage["items"][key_id][-1][1])


def ledger_item(template: StackTemplate, key_id: str, tier: str = "free") -> dict[str, Any]:
    period = template.parameters[f"{tier.capitalize()}QuotaPeriod"]
    start, _ = period_bounds(period, datetime.now(UTC))
    found = boto3.client("dynamodb").get_item(
        TableName=os.environ["METERING_TABLE"],
        Key={"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": f"PERIOD#{period_key(start)}"}},
    )
    return {name: next(iter(value.values())) for name, value in found.get("Item", {}).items()}


def extend(partner_id: str, body: Any) -> Any:
    return call("POST", f"/admin/partners/{partner_id}/extensions", body)


def quota(template: StackTemplate, tier: str) -> int:
    return int(template.parameters[f"{tier.capitalize()}QuotaLimit"])


def test_an_extension_adds_to_what_the_key_has_left_and_is_recorded_on_the_ledger(
    stack: ProvisionedStack, template: StackTemplate, operator_inbox: str
) -> None:
    # Given a free key that used its whole quota today
    partner_id = sign_up()
    key_id = key_of(partner_id)
    use(stack, "free", key_id, quota(template, "free"))
    assert remaining(stack, "free", key_id) == 0

    # When an operator grants 25 requests and 5000 tokens, twice
    first = extend(partner_id, {"requests": 25, "tokens": 5000, "reason": "launch week"})
    second = extend(partner_id, {"requests": 5, "reason": "a bit more"})

    # Then the key has 30 left, the ledger holds both grants (the tokens move committed_tokens down)
    assert (first.status, second.status) == (HTTPStatus.OK, HTTPStatus.OK), (first, second)
    assert remaining(stack, "free", key_id) == 30
    item = ledger_item(template, key_id)
    assert (int(item["extension_requests"]), int(item["extension_tokens"]), int(item["committed_tokens"])) == (
        30, 5000, -5000,
    )  # fmt: skip
    assert item["partner_id"] == partner_id and int(item["expires_at"]) > 0
    # And each is audited with what it changed, and published
    assert first.body["audit"]["details"] | {"period_start": None} == {
        "tier": "free", "requests": 25, "tokens": 5000, "remaining_before": 0, "remaining_after": 25,
        "period_start": None, "extension_requests": 25, "extension_tokens": 5000,
    }  # fmt: skip
    assert [m["action"] for m in operator_messages(operator_inbox)] == ["extension", "extension"]


def test_requests_the_ledger_counted_but_getusage_does_not_show_yet_are_not_given_again(
    stack: ProvisionedStack, template: StackTemplate
) -> None:
    # Given a key whose last 4 requests GetUsage does not report yet (it lags on AWS) but the ledger counted
    partner_id = sign_up()
    key_id = key_of(partner_id)
    boto3.client("dynamodb").update_item(
        TableName=os.environ["METERING_TABLE"],
        Key={
            "pk": {"S": f"KEY#{key_id}"},
            "sk": {
                "S": f"PERIOD#{period_key(period_bounds(template.parameters['FreeQuotaPeriod'], datetime.now(UTC))[0])}"
            },
        },
        UpdateExpression="SET requests = :n, tier = :tier",
        ExpressionAttributeValues={":n": {"N": "4"}, ":tier": {"S": "free"}},
    )

    answer = extend(partner_id, {"requests": 10, "reason": "x"})

    assert answer.status == HTTPStatus.OK, answer
    assert answer.body["audit"]["details"]["remaining_before"] == quota(template, "free") - 4
    assert remaining(stack, "free", key_id) == quota(template, "free") - 4 + 10


@pytest.mark.parametrize("action", ["suspend", "revoke"])
def test_an_extension_for_a_held_partner_is_a_409_and_changes_nothing(action: str, template: StackTemplate) -> None:
    partner_id = sign_up()
    key_id = key_of(partner_id)
    method, path = ("DELETE", "key") if action == "revoke" else ("POST", action)
    assert call(method, f"/admin/partners/{partner_id}/{path}", {"reason": "x"}).status == HTTPStatus.OK

    answer = extend(partner_id, {"requests": 5, "tokens": 5, "reason": "x"})

    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.CONFLICT, "partner_not_active")
    assert ledger_item(template, key_id) == {}
    assert call("GET", f"/admin/partners/{partner_id}").body["audit"][0]["outcome"] == "refused"


@pytest.mark.parametrize(
    "body",
    [
        {"requests": -1, "reason": "x"},
        {"tokens": -5, "reason": "x"},
        {"requests": 0, "tokens": 0, "reason": "x"},
        {"reason": "x"},
        {"requests": "5", "reason": "x"},
        {"requests": 5.0, "reason": "x"},
        {"requests": 1.5, "reason": "x"},
        {"requests": True, "reason": "x"},
        {"requests": None, "reason": "x"},
        {"requests": 10_000_001, "reason": "x"},
        {"tokens": 10**11, "reason": "x"},
        {"requests": 10**400, "reason": "x"},
        {"requests": 5},
        {"requests": 5, "reason": "x", "period": "2030-01"},
        "[5]",
    ],
)
def test_a_hostile_extension_body_is_a_400_and_changes_nothing(
    body: Any, stack: ProvisionedStack, template: StackTemplate
) -> None:
    partner_id = sign_up()
    key_id = key_of(partner_id)
    answer = extend(partner_id, body)
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), body
    assert remaining(stack, "free", key_id) == quota(template, "free")
    assert call("GET", f"/admin/partners/{partner_id}").body["audit"] == []


def test_an_unknown_partner_is_a_404() -> None:
    answer = extend("p_0123456789abcdef0123456789abcdef", {"requests": 5, "reason": "x"})
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")


@pytest.mark.parametrize(
    ("service", "operation"),
    [("api-gateway", "GetUsage"), ("api-gateway", "UpdateUsage"), ("api-gateway", "GetUsagePlans")],
)
def test_an_api_gateway_call_failing_once_grants_nothing_and_the_trail_says_failed(
    service: str, operation: str, stack: ProvisionedStack, template: StackTemplate
) -> None:
    partner_id = sign_up()
    key_id = key_of(partner_id)

    admin_service.cache_clear()
    with fails_once(service, operation, "ValidationException") as injected:
        failed = extend(partner_id, {"requests": 5, "tokens": 50, "reason": "x"})

    assert injected() == 1
    assert failed.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert remaining(stack, "free", key_id) == quota(template, "free")
    assert ledger_item(template, key_id) == {}
    [entry] = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert entry["outcome"] == "failed"
    # And the retry grants it once
    assert extend(partner_id, {"requests": 5, "tokens": 50, "reason": "x"}).status == HTTPStatus.OK
    assert remaining(stack, "free", key_id) == quota(template, "free") + 5


def test_a_failed_ledger_write_takes_the_requests_back(stack: ProvisionedStack, template: StackTemplate) -> None:
    partner_id = sign_up()
    key_id = key_of(partner_id)

    admin_service.cache_clear()
    with fails_once("dynamodb", "UpdateItem", "ValidationException") as injected:
        failed = extend(partner_id, {"requests": 5, "tokens": 50, "reason": "x"})

    # Then no request grant is left without its ledger record, and the trail says the extension failed
    assert injected() == 1
    assert failed.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert remaining(stack, "free", key_id) == quota(template, "free")
    assert ledger_item(template, key_id) == {}
    [entry] = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert (entry["outcome"], entry["details"]) == ("failed", {"error": "ClientError"})


def test_the_partners_standing_shows_requests_tokens_extensions_and_alerts(
    stack: ProvisionedStack, template: StackTemplate
) -> None:
    # Given a free key that made 10 requests (GetUsage), got an extension, and was alerted at 50%
    partner_id = sign_up()
    key_id = key_of(partner_id)
    use(stack, "free", key_id, 10)
    assert extend(partner_id, {"requests": 5, "tokens": 100, "reason": "x"}).status == HTTPStatus.OK
    start, _ = period_bounds(template.parameters["FreeQuotaPeriod"], datetime.now(UTC))
    boto3.client("dynamodb").put_item(
        TableName=os.environ["METERING_TABLE"],
        Item={
            "pk": {"S": f"KEY#{key_id}"},
            "sk": {"S": f"ALERT#{period_key(start)}#50"},
            "threshold": {"N": "50"},
            "sent_at": {"S": "2026-03-10T10:00:00+00:00"},
        },
    )

    standing = call("GET", f"/admin/partners/{partner_id}").body["standing"]

    limit = quota(template, "free")
    assert standing["period"]["start"] == period_key(start)
    assert standing["requests"] == {
        "source": "GetUsage", "used": 10, "remaining": limit - 10 + 5, "limit": limit + 5, "extension": 5,
        "ledger_count": 0,
    }  # fmt: skip
    assert (standing["tokens"]["extension"], standing["tokens"]["used"]) == (100, 0)
    assert standing["alerts"] == [{"threshold": 50, "sent_at": "2026-03-10T10:00:00+00:00"}]
