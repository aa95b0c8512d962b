"""Suspend, resume and revoke in-process on the emulated stack: API Gateway's key and our record change together,
each change is audited and published, an AWS call failing once leaves nothing half-done, and a billing event
never lifts an operator's hold."""

import os
import time
import uuid
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.admin.service import admin_service
from core.billing.models import BillingEvent, TierAction
from core.models import Partner, PartnerStatus
from tests.faults import fails_once
from tests.integration.admin.conftest import call, sign_up
from tests.lambda_events import OPERATOR_ARN
from tests.operator_topic import operator_messages

pytestmark = pytest.mark.usefixtures("admin_env")


def partner(partner_id: str) -> Partner:
    found = call("GET", f"/admin/partners/{partner_id}")
    assert found.status == HTTPStatus.OK, found
    item = boto3.client("dynamodb").get_item(
        TableName=os.environ["PARTNERS_TABLE"], Key={"pk": {"S": f"PARTNER#{partner_id}"}}
    )["Item"]
    return Partner.model_validate({name: next(iter(value.values())) for name, value in item.items() if "S" in value})


def key_enabled(key_id: str) -> bool | None:
    """The key's `enabled` at API Gateway; None once it is deleted."""
    try:
        return bool(boto3.client("apigateway").get_api_key(apiKey=key_id)["enabled"])
    except boto3.client("apigateway").exceptions.NotFoundException:
        return None


def test_suspend_and_resume_switch_the_key_and_are_audited_and_published(operator_inbox: str) -> None:
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id

    suspended = call("POST", f"/admin/partners/{partner_id}/suspend", {"reason": "abuse report #7"})
    assert suspended.status == HTTPStatus.OK, suspended
    assert (suspended.body["partner"]["status"], key_enabled(key_id)) == ("SUSPENDED", False)

    resumed = call("POST", f"/admin/partners/{partner_id}/resume", {"reason": "resolved"})
    assert resumed.status == HTTPStatus.OK, resumed
    assert (resumed.body["partner"]["status"], key_enabled(key_id)) == ("ACTIVE", True)

    # Then the trail has both, newest first, with who and why, and the topic got both as operator actions
    trail = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert [(e["seq"], e["action"], e["outcome"], e["actor"], e["reason"]) for e in trail] == [
        (2, "resume", "applied", OPERATOR_ARN, "resolved"),
        (1, "suspend", "applied", OPERATOR_ARN, "abuse report #7"),
    ]
    published = operator_messages(operator_inbox)
    assert [(m["kind"], m["action"], m["partner_id"], m["actor"]) for m in published] == [
        ("operator-action", "suspend", partner_id, OPERATOR_ARN),
        ("operator-action", "resume", partner_id, OPERATOR_ARN),
    ]


def test_revoke_deletes_the_key_and_keeps_the_partner_revoked() -> None:
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id

    revoked = call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "key leaked in a public repo"})

    assert revoked.status == HTTPStatus.OK, revoked
    assert (revoked.body["partner"]["status"], key_enabled(key_id)) == ("REVOKED", None)
    # A revoked partner is neither suspended nor resumed: it needs a key again first
    for action in ("suspend", "resume"):
        answer = call("POST", f"/admin/partners/{partner_id}/{action}", {"reason": "x"})
        assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.CONFLICT, "partner_revoked")


@pytest.mark.parametrize(
    ("service", "operation", "action"),
    [
        ("api-gateway", "UpdateApiKey", "suspend"),
        ("dynamodb", "UpdateItem", "suspend"),
        ("api-gateway", "UpdateApiKey", "revoke"),
        ("dynamodb", "UpdateItem", "revoke"),
    ],
)
def test_an_aws_call_failing_once_leaves_the_partner_as_it_was(service: str, operation: str, action: str) -> None:
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id
    method, path = ("DELETE", "key") if action == "revoke" else ("POST", action)

    # When the call fails once (an error botocore does not retry), in a new execution environment
    admin_service.cache_clear()
    with fails_once(service, operation, "ValidationException"):
        failed = call(method, f"/admin/partners/{partner_id}/{path}", {"reason": "abuse"})

    # Then the operator got a 5xx, the partner and its key are as they were, and the trail says it failed
    assert failed.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert (partner(partner_id).status, key_enabled(key_id)) == (PartnerStatus.ACTIVE, True)
    [entry] = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert (entry["action"], entry["outcome"]) == (action, "failed")
    # And the retry does it
    assert call(method, f"/admin/partners/{partner_id}/{path}", {"reason": "abuse"}).status == HTTPStatus.OK


def test_a_failed_deletion_leaves_a_disabled_key_that_the_retry_deletes() -> None:
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id

    admin_service.cache_clear()
    with fails_once("api-gateway", "DeleteApiKey", "ValidationException"):
        failed = call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "leaked"})

    assert failed.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert (partner(partner_id).status, key_enabled(key_id)) == (PartnerStatus.REVOKED, False)
    assert call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "leaked"}).status == HTTPStatus.OK
    assert key_enabled(key_id) is None


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"reason": ""},
        {"reason": " \t "},
        {"reason": "x" * 501},
        {"reason": "two\nlines"},
        {"reason": "ok", "force": True},
        "not json",
        "[1, 2]",
        '{"reason": "ok"',
        b"\xff\xfe\x00bad utf-8",
    ],
)
def test_a_change_without_a_plain_reason_or_with_a_hostile_body_is_a_400(body: Any) -> None:
    partner_id = sign_up()
    answer = call("POST", f"/admin/partners/{partner_id}/suspend", body)
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), body
    assert partner(partner_id).status is PartnerStatus.ACTIVE


def test_a_huge_body_is_a_413_and_an_unknown_partner_a_404() -> None:
    huge = call("POST", f"/admin/partners/{sign_up()}/suspend", {"reason": "x" * 20_000})
    unknown = call("POST", "/admin/partners/p_0123456789abcdef0123456789abcdef/suspend", {"reason": "x"})
    assert (huge.status, huge.body["error"]["code"]) == (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request_too_large")
    assert (unknown.status, unknown.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")


def subscription(partner_id: str, tier: str) -> BillingEvent:
    return BillingEvent(
        scheme="standard",
        event_id=f"evt_{uuid.uuid4().hex}",
        event_type="subscription.updated",
        occurred_at_us=int(time.time() * 1_000_000),
        action=TierAction.SUBSCRIBE,
        tier=tier,
        partner_id=partner_id,
    )


def test_a_billing_event_never_lifts_a_suspension_but_its_tier_applies(billing: Any) -> None:
    # Given a suspended partner
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id
    call("POST", f"/admin/partners/{partner_id}/suspend", {"reason": "fraud check"})

    # When billing upgrades it to pro
    billing.apply(subscription(partner_id, "pro"))

    # Then it is on pro but still suspended, its key disabled; billing's status waits for the resume
    after = partner(partner_id)
    assert (after.tier, after.status, after.held_status, key_enabled(key_id)) == (
        "pro", PartnerStatus.SUSPENDED, PartnerStatus.ACTIVE, False,
    )  # fmt: skip
    resumed = call("POST", f"/admin/partners/{partner_id}/resume", {"reason": "checked"})
    assert (resumed.body["partner"]["status"], resumed.body["partner"]["tier"], key_enabled(key_id)) == (
        "ACTIVE", "pro", True,
    )  # fmt: skip


def test_a_billing_event_for_a_revoked_partner_changes_its_record_only(billing: Any) -> None:
    partner_id = sign_up()
    call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "leaked"})

    outcome = billing.apply(subscription(partner_id, "pro"))

    after = partner(partner_id)
    assert (outcome.status, after.tier, after.status) == ("applied", "pro", PartnerStatus.REVOKED)


def test_a_billing_event_for_a_dormant_partner_changes_its_record_only(billing: Any) -> None:
    # Given a partner whose unused key the dormant-key sweep deleted (its record DORMANT, as the sweep leaves it)
    partner_id = sign_up()
    key_id = partner(partner_id).api_key_id
    boto3.client("apigateway").delete_api_key(apiKey=key_id)
    boto3.client("dynamodb").update_item(
        TableName=os.environ["PARTNERS_TABLE"],
        Key={"pk": {"S": f"PARTNER#{partner_id}"}},
        UpdateExpression="SET #status = :dormant",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":dormant": {"S": "DORMANT"}},
    )

    # When billing upgrades it to pro
    outcome = billing.apply(subscription(partner_id, "pro"))

    # Then the record takes the tier and stays DORMANT (billing cannot make a keyless partner ACTIVE), and no key
    # was made or touched
    after = partner(partner_id)
    assert (outcome.status, after.tier, after.status, key_enabled(key_id)) == (
        "applied", "pro", PartnerStatus.DORMANT, None,
    )  # fmt: skip
