"""POST /signup, in-process against the emulated stack provisioned from template.yaml."""

import base64
import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.adapters.partners_table import PartnerRecords
from core.errors import SignupThrottled
from core.signup.models import SignedUpPartner, SignupRequest
from core.signup.service import signup_service
from handlers import signup
from offline.provision import ProvisionedStack
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.lambda_events import LambdaContext, signup_event

pytestmark = pytest.mark.usefixtures("signup_env")


def call(body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    response = signup.handler(signup_event(body, headers), LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def keys_named_for(stack: ProvisionedStack) -> list[dict[str, Any]]:
    items = boto3.client("apigateway").get_api_keys(includeValues=False, limit=500)["items"]
    return [key for key in items if key["name"].startswith(f"{stack.stack_name}-p_")]


def plans_of(key_id: str, stack: ProvisionedStack) -> list[str]:
    apigateway = boto3.client("apigateway")
    return [
        tier
        for tier, plan_id in stack.plan_ids_by_tier.items()
        if any(item["id"] == key_id for item in apigateway.get_usage_plan_keys(usagePlanId=plan_id)["items"])
    ]


def table_items(stack: ProvisionedStack, logical_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.client("dynamodb").scan(TableName=stack.physical_ids[logical_id])["Items"]
    return items


def partner_items(stack: ProvisionedStack) -> list[dict[str, Any]]:
    return [item for item in table_items(stack, "PartnersTable") if item["pk"]["S"].startswith("PARTNER#")]


def assert_nothing_half_done(stack: ProvisionedStack) -> None:
    """No enabled key, no key left in a plan, no active record: the failed attempt left no trace."""
    for key in keys_named_for(stack):
        assert not key["enabled"], "an enabled key survived a failed signup"
        assert plans_of(key["id"], stack) == []
    assert partner_items(stack) == []
    items = table_items(stack, "PartnersTable")
    assert not [item for item in items if item["pk"]["S"].startswith("APIKEY#")]
    assert all(item["status"]["S"] != "ACTIVE" for item in items if "status" in item)


def assert_signed_up_once(stack: ProvisionedStack, body: dict[str, Any], tier: str = "free") -> None:
    """Exactly one enabled key, in exactly the tier's plan, and one active partner record pointing at it."""
    keys = keys_named_for(stack)
    assert [key["id"] for key in keys] == [body["api_key_id"]]
    assert keys[0]["enabled"] is True
    assert plans_of(body["api_key_id"], stack) == [tier]
    records = partner_items(stack)
    assert len(records) == 1
    assert records[0]["api_key_id"]["S"] == body["api_key_id"]
    assert records[0]["status"]["S"] == "ACTIVE"
    partner = PartnerRecords(stack.physical_ids["PartnersTable"]).get_by_api_key_id(body["api_key_id"])
    assert partner is not None
    assert partner.partner_id == body["partner_id"]


def test_signup_issues_an_enabled_key_in_the_free_plan(stack: ProvisionedStack, template: Any) -> None:
    # Given a new partner
    # When they sign up without choosing a tier
    status, body = call({"name": "Acme AI", "email": "Dev@Acme.example"})

    # Then they get a key on the default self-service tier, attached before the answer was sent
    assert status == HTTPStatus.CREATED
    assert set(body) == {"partner_id", "api_key", "api_key_id", "tier", "limits"}
    assert body["tier"] == "free"
    assert (
        boto3.client("apigateway").get_api_key(apiKey=body["api_key_id"], includeValue=True)["value"]
        == (body["api_key"])
    )
    assert_signed_up_once(stack, body)
    # And the limits are the template's free-tier parameters
    params = template.parameters
    assert body["limits"] == {
        "rate_limit": float(params["FreeRateLimit"]),
        "burst_limit": int(params["FreeBurstLimit"]),
        "quota_limit": int(params["FreeQuotaLimit"]),
        "quota_period": params["FreeQuotaPeriod"],
    }
    # And the record keeps the email lower-cased, the key id and a short prefix, never the value
    record = partner_items(stack)[0]
    assert record["email"]["S"] == "dev@acme.example"
    assert record["key_prefix"]["S"] == body["api_key"][:4]


@pytest.mark.parametrize("tier", ["pro", "enterprise"])
def test_paid_tier_is_refused_to_unauthenticated_callers(stack: ProvisionedStack, tier: str) -> None:
    status, body = call({"name": "Acme", "email": "a@acme.example", "tier": tier})

    assert status == HTTPStatus.FORBIDDEN
    assert body["error"]["code"] == "tier_not_self_service"
    assert "free" in body["error"]["message"]
    assert keys_named_for(stack) == []
    assert table_items(stack, "PartnersTable") == []


def test_unknown_tier_lists_the_valid_tiers(stack: ProvisionedStack) -> None:
    status, body = call({"name": "Acme", "email": "a@acme.example", "tier": "gold"})

    assert status == HTTPStatus.BAD_REQUEST
    assert body["error"]["code"] == "unknown_tier"
    for tier in ("enterprise", "free", "pro"):
        assert tier in body["error"]["message"]
    assert keys_named_for(stack) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@acme.example"}, "name"),
        ({"name": "Acme"}, "email"),
        ({"name": "Acme", "email": "not-an-email"}, "email"),
        ({"name": "", "email": "a@acme.example"}, "name"),
        ({"name": "Acme", "email": "a@acme.example", "tier": "Free Tier!"}, "tier"),
        ({"name": "Acme", "email": "a@acme.example", "admin": True}, "admin"),
    ],
)
def test_invalid_fields_are_named_in_a_400(stack: ProvisionedStack, body: dict[str, Any], field: str) -> None:
    status, answer = call(body)

    assert status == HTTPStatus.BAD_REQUEST
    assert answer["error"]["code"] == "invalid_request"
    assert field in [detail["field"] for detail in answer["error"]["details"]]
    assert keys_named_for(stack) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"name": "Acme",', "not valid JSON"),
        ("[1, 2]", "invalid"),
        (None, "required"),
        (json.dumps({"name": "A" * 5000, "email": "a@acme.example"}), "larger than"),
    ],
)
def test_malformed_or_oversized_bodies_get_a_400(stack: ProvisionedStack, raw: str | None, message: str) -> None:
    status, answer = call(raw)

    assert status == HTTPStatus.BAD_REQUEST
    assert message in answer["error"]["message"] or any(
        message in detail["message"] for detail in answer["error"].get("details", [])
    )


def test_an_email_registered_twice_gets_409_and_no_new_key(stack: ProvisionedStack) -> None:
    # Given a signed-up partner
    status, first = call({"name": "Acme", "email": "dev@acme.example"})
    assert status == HTTPStatus.CREATED

    # When the same mailbox signs up again, in another case
    status, second = call({"name": "Acme again", "email": "DEV@acme.example"})

    # Then it is refused and nothing new exists
    assert status == HTTPStatus.CONFLICT
    assert second["error"]["code"] == "email_already_registered"
    assert_signed_up_once(stack, first)


def test_a_retry_with_the_same_idempotency_key_returns_the_same_partner_and_key(stack: ProvisionedStack) -> None:
    body = {"name": "Acme", "email": "dev@acme.example"}
    headers = {"Idempotency-Key": "4f7d9c1e-signup-1"}

    status, first = call(body, headers)
    replay_status, replay = call(body, headers)

    assert (status, replay_status) == (HTTPStatus.CREATED, HTTPStatus.CREATED)
    assert replay == first
    assert_signed_up_once(stack, first)


def test_the_same_idempotency_key_with_another_body_is_refused(stack: ProvisionedStack) -> None:
    headers = {"idempotency-key": "key-1"}
    status, first = call({"name": "Acme", "email": "dev@acme.example"}, headers)
    assert status == HTTPStatus.CREATED

    status, answer = call({"name": "Other", "email": "other@acme.example"}, headers)

    assert status == HTTPStatus.UNPROCESSABLE_ENTITY
    assert answer["error"]["code"] == "idempotency_key_reused"
    assert_signed_up_once(stack, first)


@pytest.mark.parametrize(
    ("service_id", "operation", "code"),
    [
        ("dynamodb", "PutItem", "InternalServerError"),
        ("api-gateway", "CreateApiKey", "TooManyRequestsException"),
        ("api-gateway", "CreateUsagePlanKey", "ConflictException"),
        ("api-gateway", "UpdateApiKey", "BadRequestException"),
        ("dynamodb", "TransactWriteItems", "TransactionCanceledException"),
    ],
)
def test_each_call_failing_once_leaves_nothing_half_done_and_a_retry_succeeds(
    stack: ProvisionedStack, service_id: str, operation: str, code: str
) -> None:
    body = {"name": "Acme", "email": "dev@acme.example"}
    # Given one AWS call in signup fails once (after botocore's own retries, for throttling)
    with fails_once(service_id, operation, code) as injected:
        status, answer = call(body)

    # Then the attempt fails cleanly
    assert injected() == 1
    assert status in (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.SERVICE_UNAVAILABLE)
    assert "api_key" not in answer
    assert_nothing_half_done(stack)

    # And a retry succeeds, once
    status, answer = call(body)
    assert status == HTTPStatus.CREATED
    assert_signed_up_once(stack, answer)


@pytest.mark.parametrize("operation", ["CreateUsagePlanKey", "UpdateApiKey"])
def test_a_signup_killed_mid_way_is_taken_over_after_its_lease(stack: ProvisionedStack, operation: str) -> None:
    body = {"name": "Acme", "email": "dev@acme.example"}
    # Given a signup killed by a timeout after its key was created
    with dies_before("api-gateway", operation), pytest.raises(LambdaTimedOut):
        call(body)

    # When it is retried at once, the dead attempt's lease still holds: a clear 409 with Retry-After
    response = signup.handler(signup_event(body), LambdaContext())
    assert response["statusCode"] == HTTPStatus.CONFLICT
    assert json.loads(response["body"])["error"]["code"] == "signup_in_progress"
    assert int(response["multiValueHeaders"]["Retry-After"][0]) > 0

    # When the lease has expired (longer than the function's timeout: its holder is gone)
    boto3.client("dynamodb").update_item(
        TableName=stack.physical_ids["PartnersTable"],
        Key={"pk": {"S": "EMAIL#dev@acme.example"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )
    status, answer = call(body)

    # Then the retry cleans up the dead attempt's key and signs the partner up exactly once
    assert status == HTTPStatus.CREATED
    assert_signed_up_once(stack, answer)


@pytest.mark.serial
def test_twenty_concurrent_signups_get_twenty_distinct_keys_each_in_one_plan(stack: ProvisionedStack) -> None:
    # Given API Gateway's real management limits (CreateApiKey: 5 req/s), botocore retries throttled calls
    service = signup_service()
    requests = [SignupRequest(name=f"Partner {n}", email=f"partner{n}@example.com") for n in range(20)]

    def client(request: SignupRequest) -> SignedUpPartner:
        """A client doing what a throttled answer (503 with Retry-After) asks: the same request again, later.
        Only that answer is retried; anything else fails the test."""
        for _ in range(5):
            try:
                return service.sign_up(request)
            except SignupThrottled as refused:
                time.sleep(refused.retry_after_seconds)
        raise AssertionError(f"{request.email} was still throttled after 5 attempts")

    # When 20 partners sign up at once (more than botocore's three attempts can always absorb on a busy machine)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(client, requests))

    # Then each has its own key, each key sits in exactly one plan, and each has one record
    key_ids = {result.api_key_id for result in results}
    assert len(key_ids) == 20
    assert len({result.partner_id for result in results}) == 20
    for key_id in key_ids:
        assert plans_of(key_id, stack) == ["free"]
    assert len(partner_items(stack)) == 20


def test_no_key_value_reaches_logs_or_tables(
    stack: ProvisionedStack, powertools_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything any library logs, at every level
    caplog.set_level(logging.DEBUG)
    headers = {"Idempotency-Key": "no-leak"}
    body = {"name": "Acme", "email": "dev@acme.example"}

    _, first = call(body, headers)
    call(body, headers)  # a replay reads the value back from API Gateway
    call(body)  # a refused duplicate
    call({"name": "Acme", "email": "x@acme.example", "tier": "pro"})

    key = first["api_key"]
    assert key not in powertools_log.getvalue() + caplog.text
    assert "signed up partner" in powertools_log.getvalue()  # the logs were captured at all
    for logical_id in ("PartnersTable", "IdempotencyTable"):
        items = table_items(stack, logical_id)
        assert items, f"{logical_id} should hold records"
        assert key not in json.dumps(items)


def test_a_partner_may_opt_in_to_quota_alert_emails_at_signup(stack: ProvisionedStack) -> None:
    # Given one partner asking for quota alert emails, one not saying
    status, opted_in = call({"name": "Acme", "email": "dev@acme.example", "alert_emails": True})
    other_status, _ = call({"name": "Other", "email": "other@acme.example"})

    # Then both are signed up, and the record says who gets emails (the quota monitor reads it)
    assert (status, other_status) == (HTTPStatus.CREATED, HTTPStatus.CREATED)
    choices = {record["email"]["S"]: record["alert_emails"]["BOOL"] for record in partner_items(stack)}
    assert choices == {"dev@acme.example": True, "other@acme.example": False}
    assert "alert_emails" not in opted_in

    # And anything but a JSON boolean is refused, as the API's model refuses it
    status, answer = call({"name": "Third", "email": "third@acme.example", "alert_emails": "yes"})
    assert status == HTTPStatus.BAD_REQUEST
    assert [detail["field"] for detail in answer["error"]["details"]] == ["alert_emails"]


def base64_event(raw: bytes) -> dict[str, Any]:
    """A POST /signup event whose body API Gateway passed base64-encoded (as it does for bytes it cannot
    hand over as text)."""
    event = signup_event("")
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    return event


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "Acme \xff", "email": "a@acme.example"}',  # a byte that starts no UTF-8 sequence
        b'{"name": "Acme \xc3", "email": "a@acme.example"}',  # a truncated sequence
        b"\xfe\xff\x00{\x00}",  # UTF-16 with a byte-order mark
    ],
)
def test_a_body_that_is_not_utf8_gets_a_400_in_the_error_shape(stack: ProvisionedStack, raw: bytes) -> None:
    # Given a body that is not UTF-8
    # When it is posted
    response = signup.handler(base64_event(raw), LambdaContext())

    # Then it is refused as the caller's mistake, in the documented shape, and nothing is created
    assert response["statusCode"] == HTTPStatus.BAD_REQUEST
    error = json.loads(response["body"])["error"]
    assert error["code"] == "invalid_request"
    assert "UTF-8" in error["message"]
    assert keys_named_for(stack) == []


def test_a_base64_encoded_utf8_body_is_accepted(stack: ProvisionedStack) -> None:
    raw = json.dumps({"name": "Acmé", "email": "a@acme.example"}).encode()

    response = signup.handler(base64_event(raw), LambdaContext())

    assert response["statusCode"] == HTTPStatus.CREATED


@pytest.mark.parametrize(
    "name",
    [
        "Acme\r\nBcc: victim@example.com",  # CR/LF: header injection in an email
        "Acme\x00",  # NUL
        "Acme \x1b[31mred\x1b[0m",  # ANSI escape (ESC is C0)
        "Acme\x7f",  # DEL
        "Acme\x85",  # NEL (C1)
        "Acme \u202eevil",  # right-to-left override
        "Acme \u2066isolate\u2069",  # bidi isolates
        "Acme\u202a",  # left-to-right embedding
    ],
)
def test_a_name_with_control_characters_is_refused_naming_the_field(stack: ProvisionedStack, name: str) -> None:
    # Given a partner name carrying control characters that would reach an email or a terminal raw
    # When it signs up
    status, answer = call({"name": name, "email": "a@acme.example"})

    # Then it is refused with a 400 that names the field, and nothing is created
    assert status == HTTPStatus.BAD_REQUEST
    assert answer["error"]["code"] == "invalid_request"
    assert [detail["field"] for detail in answer["error"]["details"]] == ["name"]
    assert keys_named_for(stack) == []


def test_a_name_with_ordinary_unicode_is_accepted(stack: ProvisionedStack) -> None:
    status, _ = call({"name": "Zoë & Søn — 株式会社 (AI)", "email": "a@acme.example"})

    assert status == HTTPStatus.CREATED
