"""POST /admin/partners/{id}/tier in-process on the emulated stack: the billing webhook's plan moves (usage carried
once), in order with billing events by event time, held partners kept held, every change audited and published,
and an AWS call failing once leaving nothing half-done."""

import os
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.adapters.tier_changes import TierChangeRecords
from core.admin.service import admin_service
from core.billing.models import BillingEvent, TierAction
from core.models import Partner, PartnerStatus, TierChangeState
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.faults import fails_once
from tests.integration.admin.conftest import call, sign_up
from tests.lambda_events import OPERATOR_ARN
from tests.operator_topic import operator_messages

pytestmark = pytest.mark.usefixtures("admin_env")


def record(partner_id: str) -> tuple[Partner, TierChangeState]:
    found = TierChangeRecords(os.environ["PARTNERS_TABLE"]).get_with_state(partner_id)
    assert found is not None
    return found


def tiers_holding(key_id: str, stack: ProvisionedStack) -> list[str]:
    apigateway = boto3.client("apigateway")
    return sorted(
        tier
        for tier, plan_id in stack.plan_ids_by_tier.items()
        if any(item["id"] == key_id for item in apigateway.get_usage_plan_keys(usagePlanId=plan_id)["items"])
    )


def use(stack: ProvisionedStack, tier: str, key_id: str, requests: int) -> None:
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier[tier], key_id, datetime.now(UTC).date(), requests)


def remaining_today(stack: ProvisionedStack, tier: str, key_id: str) -> int:
    today = datetime.now(UTC).date().isoformat()
    usage = boto3.client("apigateway").get_usage(
        usagePlanId=stack.plan_ids_by_tier[tier], keyId=key_id, startDate=today, endDate=today
    )
    return int(usage["items"][key_id][-1][1])


def key_enabled(key_id: str) -> bool:
    return bool(boto3.client("apigateway").get_api_key(apiKey=key_id)["enabled"])


def quota(template: StackTemplate, tier: str) -> int:
    return int(template.parameters[f"{tier.capitalize()}QuotaLimit"])


def set_tier(partner_id: str, tier: str, reason: str = "enterprise contract #42") -> Any:
    return call("POST", f"/admin/partners/{partner_id}/tier", {"tier": tier, "reason": reason})


def billing_event(partner_id: str, tier: str, occurred_at_us: int) -> BillingEvent:
    return BillingEvent(
        scheme="standard",
        event_id=f"evt_{uuid.uuid4().hex}",
        event_type="subscription.updated",
        occurred_at_us=occurred_at_us,
        action=TierAction.SUBSCRIBE,
        tier=tier,
        partner_id=partner_id,
    )


def test_a_tier_change_moves_the_key_carries_usage_and_is_audited_and_published(
    stack: ProvisionedStack, template: StackTemplate, operator_inbox: str
) -> None:
    # Given a free partner that made 40 calls today
    partner_id = sign_up()
    key_id = record(partner_id)[0].api_key_id
    use(stack, "free", key_id, 40)

    # When an operator puts it on enterprise
    answer = set_tier(partner_id, "enterprise")

    # Then the same key sits in the enterprise plan only, with the 40 calls counted there
    assert answer.status == HTTPStatus.OK, answer
    assert (answer.body["partner"]["tier"], answer.body["partner"]["status"]) == ("enterprise", "ACTIVE")
    assert tiers_holding(key_id, stack) == ["enterprise"]
    expected_remaining = quota(template, "enterprise") - 40
    assert remaining_today(stack, "enterprise", key_id) == expected_remaining
    assert key_enabled(key_id)
    # And the record holds the change as the last applied one, in the billing webhook's order
    partner, state = record(partner_id)
    assert (partner.tier, state.tier_change) == ("enterprise", None)
    assert state.tier_event_id is not None and state.tier_event_id.startswith("operator:")
    # And the change is audited (who, why, what) and published as an operator action
    entry = answer.body["audit"]
    assert (entry["action"], entry["outcome"], entry["actor"], entry["reason"]) == (
        "tier", "applied", OPERATOR_ARN, "enterprise contract #42",
    )  # fmt: skip
    details = entry["details"]
    assert (details["previous_tier"], details["tier"], details["changed"], details["remaining"]) == (
        "free", "enterprise", 1, expected_remaining,
    )  # fmt: skip
    [message] = operator_messages(operator_inbox)
    assert (message["kind"], message["action"], message["partner_id"]) == ("operator-action", "tier", partner_id)

    # And the same change again changes nothing and carries nothing twice
    again = set_tier(partner_id, "enterprise")
    assert (again.status, again.body["audit"]["details"]["changed"]) == (HTTPStatus.OK, 0)
    assert remaining_today(stack, "enterprise", key_id) == expected_remaining


def test_a_round_trip_carries_the_usage_once(stack: ProvisionedStack, template: StackTemplate) -> None:
    partner_id = sign_up()
    key_id = record(partner_id)[0].api_key_id
    use(stack, "free", key_id, 10)
    assert set_tier(partner_id, "pro").status == HTTPStatus.OK
    assert set_tier(partner_id, "free").status == HTTPStatus.OK
    assert remaining_today(stack, "free", key_id) == quota(template, "free") - 10


def test_a_billing_event_older_than_the_operators_change_is_stale_and_a_later_one_wins(billing: Any) -> None:
    partner_id = sign_up()
    before = int(time.time() * 1_000_000)

    # Given an operator put the partner on enterprise
    assert set_tier(partner_id, "enterprise").status == HTTPStatus.OK

    # When a billing event from before that change arrives late, it is stale: the operator's tier stays
    late = billing.apply(billing_event(partner_id, "pro", before))
    assert (late.status, record(partner_id)[0].tier) == ("stale", "enterprise")

    # And a billing event from after the change wins by event time
    later = billing.apply(billing_event(partner_id, "pro", int(time.time() * 1_000_000) + 1_000))
    assert (later.status, record(partner_id)[0].tier) == ("applied", "pro")


def test_an_operators_change_after_a_billing_event_from_a_clock_ahead_still_applies(billing: Any) -> None:
    # Given billing applied an event stamped a minute ahead of our clock
    partner_id = sign_up()
    ahead = int(time.time() * 1_000_000) + 60_000_000
    assert billing.apply(billing_event(partner_id, "pro", ahead)).status == "applied"

    # When an operator changes the tier now, the change is ordered just after it (it was made after it)
    answer = set_tier(partner_id, "enterprise")

    assert answer.status == HTTPStatus.OK, answer
    assert answer.body["audit"]["details"]["event_at_us"] == ahead + 1
    assert record(partner_id)[0].tier == "enterprise"


def test_a_suspended_partner_gets_the_tier_recorded_and_stays_suspended(stack: ProvisionedStack) -> None:
    partner_id = sign_up()
    key_id = record(partner_id)[0].api_key_id
    assert call("POST", f"/admin/partners/{partner_id}/suspend", {"reason": "fraud check"}).status == HTTPStatus.OK

    answer = set_tier(partner_id, "pro")

    assert answer.status == HTTPStatus.OK, answer
    partner, _ = record(partner_id)
    assert (partner.tier, partner.status, partner.held_status, key_enabled(key_id)) == (
        "pro", PartnerStatus.SUSPENDED, PartnerStatus.ACTIVE, False,
    )  # fmt: skip
    assert tiers_holding(key_id, stack) == ["pro"]
    resumed = call("POST", f"/admin/partners/{partner_id}/resume", {"reason": "checked"})
    assert (resumed.body["partner"]["status"], resumed.body["partner"]["tier"], key_enabled(key_id)) == (
        "ACTIVE", "pro", True,
    )  # fmt: skip


def test_a_revoked_partner_gets_the_tier_recorded_only() -> None:
    partner_id = sign_up()
    assert call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "leaked"}).status == HTTPStatus.OK

    answer = set_tier(partner_id, "pro")

    assert answer.status == HTTPStatus.OK, answer
    partner, _ = record(partner_id)
    assert (partner.tier, partner.status, answer.body["audit"]["details"]["moved"]) == (
        "pro", PartnerStatus.REVOKED, 0,
    )  # fmt: skip


def test_a_billing_change_in_progress_makes_the_operator_wait(stack: ProvisionedStack) -> None:
    # Given a billing change holds the partner's lock (its lease has not expired)
    partner_id = sign_up()
    boto3.client("dynamodb").update_item(
        TableName=os.environ["PARTNERS_TABLE"],
        Key={"pk": {"S": f"PARTNER#{partner_id}"}},
        UpdateExpression="SET tier_change = :change",
        ExpressionAttributeValues={
            ":change": {
                "M": {
                    "event_id": {"S": "evt_busy"},
                    "to_tier": {"S": "pro"},
                    "to_status": {"S": "ACTIVE"},
                    "lease_until": {"N": str(int(time.time()) + 60)},
                    "carried_in": {"N": "0"},
                }
            }
        },
    )

    answer = set_tier(partner_id, "enterprise")

    # Then the operator is told to retry, nothing moved, and the trail says the change was refused
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.CONFLICT, "change_in_progress")
    assert "Retry-After" in answer.headers
    assert record(partner_id)[0].tier == "free"
    [entry] = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert (entry["action"], entry["outcome"], entry["details"]) == (
        "tier",
        "refused",
        {"error": "TierChangeInProgress"},
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tier": "platinum", "reason": "deal"}, "unknown_tier"),
        ({"tier": "PRO", "reason": "deal"}, "invalid_request"),
        ({"tier": "", "reason": "deal"}, "invalid_request"),
        ({"tier": 3, "reason": "deal"}, "invalid_request"),
        ({"tier": ["pro"], "reason": "deal"}, "invalid_request"),
        ({"tier": "pro"}, "invalid_request"),
        ({"tier": "pro", "reason": "deal", "status": "ACTIVE"}, "invalid_request"),
        ({"tier": "x" * 10_000, "reason": "deal"}, "invalid_request"),
        ({"tier": "../free", "reason": "deal"}, "invalid_request"),
        ("not json", "invalid_request"),
    ],
)
def test_a_bad_tier_or_body_is_a_400_and_records_nothing(body: Any, code: str) -> None:
    partner_id = sign_up()
    answer = call("POST", f"/admin/partners/{partner_id}/tier", body)
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, code), answer
    assert record(partner_id)[0].tier == "free"
    assert call("GET", f"/admin/partners/{partner_id}").body["audit"] == []


def test_an_unknown_partner_is_a_404() -> None:
    for partner_id in ("p_0123456789abcdef0123456789abcdef", "no%20such"):
        answer = call("POST", f"/admin/partners/{partner_id}/tier", {"tier": "pro", "reason": "deal"})
        assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")


def test_a_failed_attach_puts_the_key_back_and_the_retry_carries_the_usage_once(
    stack: ProvisionedStack, template: StackTemplate
) -> None:
    partner_id = sign_up()
    key_id = record(partner_id)[0].api_key_id
    use(stack, "free", key_id, 7)

    # When API Gateway refuses the attach once (in a new execution environment)
    admin_service.cache_clear()
    with fails_once("api-gateway", "CreateUsagePlanKey", "BadRequestException") as injected:
        failed = set_tier(partner_id, "pro")

    # Then the operator is told to retry, the key is back on free, the lock is free, and the trail says so
    assert injected() == 1
    assert (failed.status, failed.body["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "tier_change_failed")
    assert tiers_holding(key_id, stack) == ["free"]
    partner, state = record(partner_id)
    assert (partner.tier, state.tier_change is None or state.tier_change.lease_until == 0) == ("free", True)
    [entry] = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert (entry["outcome"], entry["details"]) == ("refused", {"error": "TierChangeFailed"})

    # And the retry moves it with the usage carried once
    assert set_tier(partner_id, "pro").status == HTTPStatus.OK
    assert tiers_holding(key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", key_id) == quota(template, "pro") - 7


@pytest.mark.parametrize(
    ("service", "operation", "code"),
    [
        ("api-gateway", "UpdateUsage", "ValidationException"),
        ("api-gateway", "GetUsage", "ValidationException"),
        ("dynamodb", "UpdateItem", "ValidationException"),
        ("dynamodb", "Query", "ValidationException"),
    ],
)
def test_an_aws_call_failing_once_is_finished_by_the_retry(
    stack: ProvisionedStack, template: StackTemplate, service: str, operation: str, code: str
) -> None:
    partner_id = sign_up()
    key_id = record(partner_id)[0].api_key_id
    use(stack, "free", key_id, 5)

    admin_service.cache_clear()
    with fails_once(service, operation, code) as injected:
        failed = set_tier(partner_id, "pro")

    # Then the operator got a 5xx, the trail says the change failed, and no lock is left held
    assert injected() == 1
    assert failed.status == HTTPStatus.INTERNAL_SERVER_ERROR, failed
    _, state = record(partner_id)
    assert state.tier_change is None or state.tier_change.lease_until == 0
    outcomes = [entry["outcome"] for entry in call("GET", f"/admin/partners/{partner_id}").body["audit"]]
    assert outcomes == ["failed"]

    # And the retry finishes it, the usage carried once
    assert set_tier(partner_id, "pro").status == HTTPStatus.OK
    assert tiers_holding(key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", key_id) == quota(template, "pro") - 5
