"""POST /admin/partners/{id}/key in-process on the emulated stack: a rotation carries the old key's standing to the
new key (UpdateUsage for requests, the ledger for tokens), deletes the old key now or lets the sweep delete it
after the grace, re-issues a key to a revoked partner, and a failure or a kill at any step leaves the partner
with a key in its plan and no key that nothing records."""

import os
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.adapters.apigateway import ApiGateway
from core.adapters.retired_keys import RetiredKeyRecords
from core.admin.service import admin_service
from core.key_rotation import ISSUING_LEASE_SECONDS, RetiredKeySweep
from core.periods import period_bounds, period_key
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.integration.admin.conftest import call, sign_up
from tests.operator_topic import operator_messages

pytestmark = pytest.mark.usefixtures("admin_env")


def record(partner_id: str) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=os.environ["PARTNERS_TABLE"], Key={"pk": {"S": f"PARTNER#{partner_id}"}}, ConsistentRead=True
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


def partner_keys(partner_id: str) -> dict[str, bool]:
    """Every live key tagged with the partner's id: id -> enabled (test code may list keys; the product never does)."""
    found = boto3.client("apigateway").get_api_keys(limit=500)["items"]
    return {
        key["id"]: key["enabled"] for key in found if key.get("tags", {}).get("metered-ai:partner-id") == partner_id
    }


def plan_keys(stack: ProvisionedStack, tier: str = "free") -> set[str]:
    pages = boto3.client("apigateway").get_usage_plan_keys(usagePlanId=stack.plan_ids_by_tier[tier], limit=500)
    return {key["id"] for key in pages["items"]}


def remaining(stack: ProvisionedStack, key_id: str, tier: str = "free") -> int | None:
    return apigateway_fidelity.ledger().remaining(stack.plan_ids_by_tier[tier], key_id, datetime.now(UTC))


def retirements() -> dict[str, dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=os.environ["PARTNERS_TABLE"])["Items"]
    return {
        item["pk"]["S"].removeprefix("RETIRE#"): {name: next(iter(v.values())) for name, v in item.items()}
        for item in items
        if item["pk"]["S"].startswith("RETIRE#")
    }


def ledger_item(key_id: str) -> dict[str, Any]:
    start, _ = period_bounds("DAY", datetime.now(UTC))
    found = boto3.client("dynamodb").get_item(
        TableName=os.environ["METERING_TABLE"],
        Key={"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": f"PERIOD#{period_key(start)}"}},
        ConsistentRead=True,
    )
    return {name: next(iter(value.values())) for name, value in found.get("Item", {}).items()}


def used_before(stack: ProvisionedStack, key_id: str, requests: int, tokens: int) -> None:
    """The key made `requests` calls today (API Gateway's count) and the AI API committed `tokens`."""
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier["free"], key_id, datetime.now(UTC).date(), requests)
    start, _ = period_bounds("DAY", datetime.now(UTC))
    boto3.client("dynamodb").put_item(
        TableName=os.environ["METERING_TABLE"],
        Item={
            "pk": {"S": f"KEY#{key_id}"},
            "sk": {"S": f"PERIOD#{period_key(start)}"},
            "requests": {"N": str(requests)},
            "prompt_tokens": {"N": str(tokens)},
            "completion_tokens": {"N": "0"},
            "committed_tokens": {"N": str(tokens)},
            "extension_tokens": {"N": "1000"},
        },
    )


def sweep(at: float) -> None:
    RetiredKeySweep(ApiGateway(), RetiredKeyRecords(os.environ["PARTNERS_TABLE"])).run(
        at, time_left=lambda: 60, reserve_seconds=1
    )


def rotate(partner_id: str, grace: Any = None, reason: str = "key leaked in a log") -> Any:
    body = {"reason": reason} | ({} if grace is None else {"grace_seconds": grace})
    return call("POST", f"/admin/partners/{partner_id}/key", body)


def test_a_rotation_without_grace_carries_the_standing_and_deletes_the_old_key_at_once(
    stack: ProvisionedStack, operator_inbox: str
) -> None:
    # Given a partner whose key made 7 requests and committed 1234 tokens today
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    used_before(stack, old, requests=7, tokens=1234)
    quota_left = remaining(stack, old)

    # When an operator rotates its key with no grace
    answer = rotate(partner_id)

    # Then the answer shows the new key once; the record names it (id and prefix), enabled in the partner's plan
    assert answer.status == HTTPStatus.OK, answer
    new, value = answer.body["api_key_id"], answer.body["api_key"]
    assert (record(partner_id)["api_key_id"], record(partner_id)["key_prefix"]) == (new, value[:4])
    assert answer.body["partner"]["api_key_id"] == new and answer.body["retired_key"]["deleted"] is True
    assert partner_keys(partner_id) == {new: True} and new in plan_keys(stack)
    # With the old key's requests remaining and its tokens (and extension) on the new key's ledger item
    assert remaining(stack, new) == quota_left
    carried = ledger_item(new)
    assert (
        carried["carried_requests"], carried["carried_tokens"], carried["committed_tokens"], carried["extension_tokens"]
    ) == ("7", "1234", "1234", "1000")  # fmt: skip
    # Audited and published, never with the key's value
    trail = call("GET", f"/admin/partners/{partner_id}").body["audit"]
    assert (trail[0]["action"], trail[0]["outcome"], trail[0]["details"]["new_key_id"]) == ("issue-key", "applied", new)
    [message] = operator_messages(operator_inbox)
    assert (message["action"], message["details"]["retired_key_id"]) == ("issue-key", old)
    assert value not in str(trail) + str(message)
    assert retirements() == {}


def test_with_a_grace_both_keys_work_until_the_sweep(stack: ProvisionedStack) -> None:
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]

    answer = rotate(partner_id, grace=600)

    assert answer.status == HTTPStatus.OK, answer
    new = answer.body["api_key_id"]
    assert partner_keys(partner_id) == {old: True, new: True}
    assert retirements()[old]["reason"] == "rotated"
    # The old key still finds its partner (the AI API meters it on the partner's current key)
    index = boto3.client("dynamodb").get_item(
        TableName=os.environ["PARTNERS_TABLE"], Key={"pk": {"S": f"APIKEY#{old}"}}
    )
    assert index["Item"]["partner_id"]["S"] == partner_id

    sweep(at=time.time() + 60)
    assert set(partner_keys(partner_id)) == {old, new}
    sweep(at=time.time() + 601)
    assert partner_keys(partner_id) == {new: True} and retirements() == {}


@pytest.mark.parametrize("action", ["revoke", "dormant"])
def test_a_revoked_or_dormant_partner_gets_a_key_again(stack: ProvisionedStack, action: str) -> None:
    partner_id = sign_up()
    if action == "revoke":
        assert call("DELETE", f"/admin/partners/{partner_id}/key", {"reason": "leaked"}).status == HTTPStatus.OK
    else:
        old = record(partner_id)["api_key_id"]
        boto3.client("apigateway").delete_api_key(apiKey=old)
        boto3.client("dynamodb").update_item(
            TableName=os.environ["PARTNERS_TABLE"],
            Key={"pk": {"S": f"PARTNER#{partner_id}"}},
            UpdateExpression="SET #s = :dormant",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":dormant": {"S": "DORMANT"}},
        )

    answer = rotate(partner_id, reason="partner asked for a new key")

    assert answer.status == HTTPStatus.OK, answer
    assert answer.body["partner"]["status"] == "ACTIVE" and answer.body["retired_key"] is None
    assert partner_keys(partner_id) == {answer.body["api_key_id"]: True}
    assert "held_status" not in record(partner_id)


def test_a_suspended_partner_gets_no_new_key() -> None:
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    assert call("POST", f"/admin/partners/{partner_id}/suspend", {"reason": "abuse"}).status == HTTPStatus.OK

    answer = rotate(partner_id)

    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.CONFLICT, "partner_not_active")
    assert partner_keys(partner_id) == {old: False}
    assert call("GET", f"/admin/partners/{partner_id}").body["audit"][0]["outcome"] == "refused"


@pytest.mark.parametrize("grace", [-1, 604_801, "60", 1.5, True, None, [], 10**30])
def test_a_bad_grace_is_a_400(grace: Any) -> None:
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]

    answer = call("POST", f"/admin/partners/{partner_id}/key", {"reason": "rotate", "grace_seconds": grace})

    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), answer
    assert partner_keys(partner_id) == {old: True}


def test_the_longest_grace_is_accepted_and_unknown_partners_are_404() -> None:
    assert rotate(sign_up(), grace=604_800).status == HTTPStatus.OK
    assert rotate("p_" + "0" * 32).status == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("api-gateway", "CreateApiKey"),
        ("api-gateway", "CreateUsagePlanKey"),
        ("api-gateway", "GetUsage"),
        ("api-gateway", "UpdateUsage"),
        ("api-gateway", "UpdateApiKey"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "TransactWriteItems"),
    ],
)
def test_a_call_failing_once_leaves_the_old_key_in_its_plan_and_no_new_key(
    stack: ProvisionedStack, service: str, operation: str
) -> None:
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    admin_service.cache_clear()  # clients made inside the block take its hook

    with fails_once(service, operation, "AccessDeniedException", 403) as failed:
        answer = rotate(partner_id)

    assert failed() == 1 and answer.status >= HTTPStatus.BAD_REQUEST, answer
    assert record(partner_id)["api_key_id"] == old
    assert partner_keys(partner_id) == {old: True} and old in plan_keys(stack)
    assert retirements() == {}


@pytest.mark.parametrize(
    ("service", "operation"),
    [("api-gateway", "CreateUsagePlanKey"), ("api-gateway", "UpdateUsage"), ("api-gateway", "UpdateApiKey")],
)
def test_a_rotation_killed_mid_way_leaves_a_key_the_sweep_deletes(
    stack: ProvisionedStack, service: str, operation: str
) -> None:
    # Given a rotation killed (Lambda's timeout: no cleanup runs) before one of its steps
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    admin_service.cache_clear()
    with dies_before(service, operation), pytest.raises(LambdaTimedOut):
        rotate(partner_id)

    # Then the partner still has its key in its plan, and the new key is recorded for the sweep
    assert record(partner_id)["api_key_id"] == old and old in plan_keys(stack)
    [leftover] = set(partner_keys(partner_id)) - {old}
    assert retirements()[leftover]["reason"] == "issuing"

    # When the sweep runs after the new key's lease, only the partner's own key is left
    sweep(at=time.time() + ISSUING_LEASE_SECONDS + 1)
    assert partner_keys(partner_id) == {old: True} and retirements() == {}


def test_a_rotation_killed_before_deleting_the_old_key_leaves_it_to_the_sweep() -> None:
    # Given a rotation without grace killed after the record switched, before DeleteApiKey of the old key
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    admin_service.cache_clear()
    with dies_before("api-gateway", "DeleteApiKey"), pytest.raises(LambdaTimedOut):
        rotate(partner_id)

    # Then the partner has its new key, and the old one is due for deletion now
    new = record(partner_id)["api_key_id"]
    assert new != old and set(retirements()) == {old}

    # When the sweep's next run comes, only the new key is left
    sweep(at=time.time())
    assert partner_keys(partner_id) == {new: True} and retirements() == {}


def test_at_the_key_ceiling_a_rotation_answers_503_capacity_exhausted_and_changes_nothing() -> None:
    partner_id = sign_up()
    old = record(partner_id)["api_key_id"]
    apigateway_fidelity.set_management_rate_limits(False)
    apigateway_fidelity.set_api_key_limit(len(boto3.client("apigateway").get_api_keys(limit=500)["items"]))
    try:
        answer = rotate(partner_id)
    finally:
        apigateway_fidelity.set_api_key_limit(None)
        apigateway_fidelity.set_management_rate_limits(None)

    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "capacity_exhausted")
    assert partner_keys(partner_id) == {old: True} and retirements() == {}


def test_two_rotations_at_once_leave_one_new_key() -> None:
    partner_id = sign_up()
    answers: list[Any] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        answers.append(rotate(partner_id))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(answer.status for answer in answers)
    assert statuses in ([HTTPStatus.OK, HTTPStatus.OK], [HTTPStatus.OK, HTTPStatus.CONFLICT]), answers
    assert partner_keys(partner_id) == {record(partner_id)["api_key_id"]: True}
    assert retirements() == {}
