"""The offline stack over real HTTP: signup, a key-protected route, and what API Gateway enforces on it."""

import email
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http

pytestmark = pytest.mark.e2e

# API Gateway's `message`; the template's gateway responses add OpenAI's `error`
# (tests/offline/unit/test_gateway_responses.py).
FORBIDDEN = "Forbidden"
TOO_MANY_REQUESTS = "Too Many Requests"
LIMIT_EXCEEDED = "Limit Exceeded"


def sign_up(stack: RunningStack, tier: str | None = None) -> dict[str, Any]:
    body = {"name": "Ada Lovelace", "email": f"ada-{uuid.uuid4().hex[:8]}@example.com"}
    if tier:
        body["tier"] = tier
    answer = http("POST", stack.url("/signup"), body=body)
    for _ in range(10):  # signup's stage throttle (SignupRateLimit) refuses bursts: wait as a client would
        if answer.status != HTTPStatus.TOO_MANY_REQUESTS:
            break
        time.sleep(1)
        answer = http("POST", stack.url("/signup"), body=body)
    assert answer.status == HTTPStatus.CREATED, answer
    return dict(answer.body)


def list_models(stack: RunningStack, api_key: str | None) -> Answer:
    return http("GET", stack.url("/v1/models"), headers={"x-api-key": api_key} if api_key else {})


def used_today(stack: RunningStack, tier: str, key_id: str) -> int:
    """What boto3 get_usage reports for the key today, against the stack's emulator."""
    today = datetime.now(UTC).date().isoformat()
    usage = stack.client("apigateway").get_usage(
        usagePlanId=stack.info["usage_plan_ids"][tier], keyId=key_id, startDate=today, endDate=today
    )
    return int(usage["items"][key_id][0][0])


def test_a_partner_signs_up_and_lists_models_with_its_key(metered_stack: RunningStack) -> None:
    # Given a partner that signed up on the free tier
    partner = sign_up(metered_stack)

    # When it lists the models with its key
    answer = list_models(metered_stack, partner["api_key"])

    # Then the function answered with the free tier's models (FreeModels), in OpenAI's list shape, and the
    # call counted once
    assert answer.status == HTTPStatus.OK
    assert answer.body == {
        "object": "list",
        "data": [{"id": "nova-micro", "object": "model", "created": 0, "owned_by": "metered-ai"}],
    }
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["x-amzn-RequestId"]
    assert used_today(metered_stack, "free", partner["api_key_id"]) == 1


@pytest.mark.parametrize("api_key", [None, "not-a-key-of-this-account-000000000000"])
def test_a_key_route_without_a_valid_key_is_forbidden(metered_stack: RunningStack, api_key: str | None) -> None:
    # Given no key, or a key API Gateway does not know

    # When the key-protected route is called
    answer = list_models(metered_stack, api_key)

    # Then API Gateway's own 403 answers, before any function runs
    assert (answer.status, answer.body["message"]) == (HTTPStatus.FORBIDDEN, FORBIDDEN)


def test_an_unknown_route_is_missing_authentication_token(metered_stack: RunningStack) -> None:
    # Given a path and a method the template does not declare
    # When they are called
    wrong_path = http("GET", metered_stack.url("/v1/nothing-here"))
    wrong_method = http("DELETE", metered_stack.url("/v1/models"))

    # Then API Gateway answers as it does for anything it has no method for
    for answer in (wrong_path, wrong_method):
        assert (answer.status, answer.body) == (HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"})


def test_bursting_past_the_plan_is_throttled_and_not_counted(metered_stack: RunningStack) -> None:
    # Given a free key (rate 1/s, burst 2 in this stack)
    partner = sign_up(metered_stack)

    # When it sends three requests at once (truly at once: one after the other, a loaded machine may take long
    # enough per call for the bucket to refill)
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = sorted(
            pool.map(lambda _: list_models(metered_stack, partner["api_key"]), range(3)),
            key=lambda answer: answer.status,
        )

    # Then the burst passes, the third is throttled, and only the two served requests are usage
    assert [answer.status for answer in answers] == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]
    assert answers[2].body["message"] == TOO_MANY_REQUESTS
    assert used_today(metered_stack, "free", partner["api_key_id"]) == 2


def test_the_quota_stops_a_key_and_update_usage_lets_it_through_again(metered_stack: RunningStack) -> None:
    # Given a pro key (5 requests a day in this stack, throttle out of the way)
    partner = sign_up(metered_stack, tier="pro")
    key_id = partner["api_key_id"]

    # When it uses its whole quota and one more
    answers = [list_models(metered_stack, partner["api_key"]) for _ in range(6)]

    # Then the sixth is refused, and exactly the five served requests are usage
    assert [answer.status for answer in answers[:5]] == [HTTPStatus.OK] * 5
    assert (answers[5].status, answers[5].body["message"]) == (HTTPStatus.TOO_MANY_REQUESTS, LIMIT_EXCEEDED)
    assert used_today(metered_stack, "pro", key_id) == 5

    # When the operator grants two more requests with UpdateUsage
    metered_stack.client("apigateway").update_usage(
        usagePlanId=metered_stack.info["usage_plan_ids"]["pro"],
        keyId=key_id,
        patchOperations=[{"op": "replace", "path": "/remaining", "value": "2"}],
    )
    after_grant = [list_models(metered_stack, partner["api_key"]) for _ in range(3)]

    # Then exactly two more pass
    assert [answer.status for answer in after_grant] == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]
    assert after_grant[2].body["message"] == LIMIT_EXCEEDED
    assert used_today(metered_stack, "pro", key_id) == 7


def test_a_disabled_key_is_forbidden_until_enabled_again(metered_stack: RunningStack) -> None:
    # Given a working key
    partner = sign_up(metered_stack, tier="pro")
    apigateway = metered_stack.client("apigateway")
    assert list_models(metered_stack, partner["api_key"]).status == HTTPStatus.OK

    # When the operator disables it
    disable = [{"op": "replace", "path": "/enabled", "value": "false"}]
    apigateway.update_api_key(apiKey=partner["api_key_id"], patchOperations=disable)

    # Then API Gateway refuses it at once, and accepts it again once enabled
    assert list_models(metered_stack, partner["api_key"]).body["message"] == FORBIDDEN
    enable = [{"op": "replace", "path": "/enabled", "value": "true"}]
    apigateway.update_api_key(apiKey=partner["api_key_id"], patchOperations=enable)
    assert list_models(metered_stack, partner["api_key"]).status == HTTPStatus.OK


def test_a_key_in_no_plan_for_the_stage_is_forbidden(metered_stack: RunningStack) -> None:
    # Given a key taken out of its plan (enabled, but metered by no plan on this stage)
    partner = sign_up(metered_stack, tier="pro")
    metered_stack.client("apigateway").delete_usage_plan_key(
        usagePlanId=metered_stack.info["usage_plan_ids"]["pro"], keyId=partner["api_key_id"]
    )

    # When it calls the key-protected route
    answer = list_models(metered_stack, partner["api_key"])

    # Then it is refused like an unknown key
    assert (answer.status, answer.body["message"]) == (HTTPStatus.FORBIDDEN, FORBIDDEN)


def test_stack_json_says_where_everything_is(metered_stack: RunningStack) -> None:
    # Given the running stack's stack.json
    info = metered_stack.info

    # Then it names the API, the emulator, the outbox and the stack, and its plans and tables are real
    assert info["api_url"] == f"http://127.0.0.1:{info['port']}/live"
    assert info["aws_endpoint_url"].startswith("http://127.0.0.1:")
    assert info["region"] == "us-east-1"
    assert info["stack_name"] == "metered-ai-local"
    assert info["outbox_dir"] == str(metered_stack.state_dir / "outbox")
    plans = metered_stack.client("apigateway").get_usage_plans()["items"]
    assert {plan["name"]: plan["id"] for plan in plans} == {
        f"metered-ai-local-{tier}": plan_id for tier, plan_id in info["usage_plan_ids"].items()
    }
    assert set(info["usage_plan_ids"]) == {"free", "pro", "enterprise"}
    assert info["tiers"]["free"] | {"plan_id": None} == {
        "plan_id": None,
        "rate_limit": 1.0,
        "burst_limit": 2,
        "quota_limit": 1000,
        "quota_period": "DAY",
        "quota_offset": 0,
        "method_throttles": {},
    }
    dynamodb = metered_stack.client("dynamodb")
    for table in info["tables"].values():
        assert dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def test_an_alert_to_the_email_subscription_lands_in_the_outbox(metered_stack: RunningStack) -> None:
    # Given the stack started with AlertEmail=ops@example.com (an email subscription on AlertTopic)
    outbox = metered_stack.state_dir / "outbox"
    before = set(outbox.glob("*.eml"))

    # When something publishes an alert
    metered_stack.client("sns").publish(
        TopicArn=metered_stack.info["topics"]["AlertTopic"],
        Subject="Quota alert: acme at 80%",
        Message="Partner acme has used 80% of its daily quota.",
        MessageAttributes={"partner_id": {"DataType": "String", "StringValue": "p_acme"}},
    )

    # Then one readable message is in the outbox, addressed to the subscriber
    [written] = set(outbox.glob("*.eml")) - before
    message = email.message_from_bytes(written.read_bytes())
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "Quota alert: acme at 80%"
    assert message["X-SNS-Attribute-partner_id"] == "p_acme"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert "Partner acme has used 80% of its daily quota." in payload.decode()
