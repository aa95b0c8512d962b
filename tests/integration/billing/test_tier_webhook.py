"""POST /webhooks/billing, in-process against the emulated stack provisioned from template.yaml: signed events
(Stripe's test-header helper, standardwebhooks' Webhook.sign) move a partner's key between usage plans."""

import io
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

import core.signup.service
from core.billing.adapters.partners import BillingPartners
from core.billing.service import tier_change_service
from core.models import Partner, PartnerStatus, TierChangeState
from core.observability import metrics
from core.settings import forget_settings
from core.signup.models import SignupRequest
from core.signup.service import signup_service
from handlers import tier_webhook
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from offline.webhook_secrets import ensure_webhook_secrets, generate_signing_secret
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.lambda_events import LambdaContext
from tests.operator_topic import operator_messages
from tests.webhook_events import (
    body_of,
    generic_event,
    standard_headers,
    stripe_headers,
    stripe_subscription_event,
    webhook_proxy_event,
)

pytestmark = pytest.mark.usefixtures("signup_env")


# --- Fixtures and helpers ------------------------------------------------------------------------------------


@pytest.fixture
def secrets(
    stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The webhook function's environment as the template sets it, and its signing secrets (generated as the
    offline stack generates them, into the stack's BillingWebhookSecret)."""
    variables = template.resources["TierWebhookFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    # Powertools reads the namespace when core.observability is imported, before this environment existed.
    monkeypatch.setattr(metrics, "namespace", os.environ["POWERTOOLS_METRICS_NAMESPACE"])
    generated = ensure_webhook_secrets(stack)
    assert generated is not None
    forget_settings()
    tier_change_service.cache_clear()
    yield generated
    forget_settings()
    tier_change_service.cache_clear()


def post(body: str | None, headers: dict[str, str], *, base64_body: bool = False) -> tuple[int, dict[str, Any]]:
    event = webhook_proxy_event(body, headers, base64_body=base64_body)
    response = tier_webhook.handler(event, LambdaContext(function_name="TierWebhookFunction"))
    answer = json.loads(response["body"])
    answer["_headers"] = {name: values[0] for name, values in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], answer


def send_stripe(
    secrets: dict[str, str], payload: dict[str, Any], timestamp: int | None = None
) -> tuple[int, dict[str, Any]]:
    body = body_of(payload)
    return post(body, stripe_headers(body, secrets["stripe"], timestamp))


def send_generic(
    secrets: dict[str, str], payload: dict[str, Any], message_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    body = body_of(payload)
    return post(body, standard_headers(body, secrets["standard"], message_id))


def sign_up(email: str | None = None) -> Partner:
    result = signup_service().sign_up(
        SignupRequest(name="Acme AI", email=email or f"{uuid.uuid4().hex[:10]}@acme.example")
    )
    return partner_of(result.partner_id)[0]


def partner_of(partner_id: str) -> tuple[Partner, TierChangeState]:
    found = BillingPartners(os.environ["PARTNERS_TABLE"]).get_with_state(partner_id)
    assert found is not None
    return found


def tiers_holding(key_id: str, stack: ProvisionedStack) -> list[str]:
    apigateway = boto3.client("apigateway")
    return sorted(
        tier
        for tier, plan_id in stack.plan_ids_by_tier.items()
        if any(item["id"] == key_id for item in apigateway.get_usage_plan_keys(usagePlanId=plan_id)["items"])
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def remaining_today(stack: ProvisionedStack, tier: str, key_id: str) -> int:
    usage = boto3.client("apigateway").get_usage(
        usagePlanId=stack.plan_ids_by_tier[tier], keyId=key_id, startDate=today(), endDate=today()
    )
    return int(usage["items"][key_id][-1][1])


def use(stack: ProvisionedStack, tier: str, key_id: str, requests: int) -> None:
    """`requests` calls the gateway admitted today for the key in the tier's plan (what GetUsage counts)."""
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier[tier], key_id, datetime.now(UTC).date(), requests)


def key_enabled(key_id: str) -> bool:
    return bool(boto3.client("apigateway").get_api_key(apiKey=key_id)["enabled"])


def quota(template: StackTemplate, tier: str) -> int:
    return int(template.parameters[f"{tier.capitalize()}QuotaLimit"])


# --- Moves and usage carry-over ------------------------------------------------------------------------------


def test_upgrade_free_to_pro_moves_the_same_key_and_carries_usage(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given a free partner that made 40 calls today
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 40)

    # When Stripe says its subscription is now on the price whose lookup_key is "pro"
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    status, answer = send_stripe(secrets, event)

    # Then the same key sits in the pro plan only, and the 40 calls count against the pro quota
    assert status == HTTPStatus.OK, answer
    assert answer["status"] == "applied"
    assert (answer["previous_tier"], answer["tier"]) == ("free", "pro")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 40
    assert key_enabled(partner.api_key_id)
    # And the partner record says pro, with the event it applied
    record, state = partner_of(partner.partner_id)
    assert (record.tier, record.status) == ("pro", PartnerStatus.ACTIVE)
    assert state.tier_event_id == event["id"]
    assert state.tier_change is None
    # And the operators were told: partner, old tier, new tier, event id
    # And the operators got an email: who, from which tier to which, what changed, the event
    [message] = operator_messages(operator_inbox)
    assert (message["kind"], message["partner_id"], message["tier"]) == ("tier-change", partner.partner_id, "pro")
    assert message["subject"] == f"Tier change: {partner.partner_id} free -> pro"
    text = message["body"]
    assert f"Acme AI (partner {partner.partner_id}) moved from the free tier to the pro tier." in text
    assert f"Requests: {quota(template, 'free')} a day -> {quota(template, 'pro')} a month" in " ".join(text.split())
    assert "Models:" in text
    assert f"{quota(template, 'pro') - 40} requests left in the pro quota" in text
    assert event["id"] in text
    assert not text.lstrip().startswith("{")


def test_downgrade_pro_to_free_with_usage_over_the_free_quota_leaves_zero_remaining(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str]
) -> None:
    # Given a pro partner (moved there by a generic event) that made more calls today than free allows
    partner = sign_up()
    status, _ = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="pro"))
    assert status == HTTPStatus.OK
    use(stack, "pro", partner.api_key_id, quota(template, "free") + 500)

    # When the billing system downgrades it to free
    later = datetime.now(UTC) + timedelta(seconds=1)
    status, answer = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="free", at=later))

    # Then the key is on the free plan with nothing left today: no fresh quota from the move
    assert (status, answer["status"], answer["tier"]) == (HTTPStatus.OK, "applied", "free")
    assert tiers_holding(partner.api_key_id, stack) == ["free"]
    assert remaining_today(stack, "free", partner.api_key_id) == 0
    assert partner_of(partner.partner_id)[0].tier == "free"


def test_an_upgrade_counts_this_periods_earlier_usage_and_keeps_usage_carried_before(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str]
) -> None:
    # Given a free partner moved to pro with 40 calls carried over, that then made 60 calls on pro
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 40)
    assert send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="pro"))[0] == HTTPStatus.OK
    use(stack, "pro", partner.api_key_id, 60)

    # When it moves on to enterprise (same MONTH period as pro)
    later = datetime.now(UTC) + timedelta(seconds=1)
    status, _ = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="enterprise", at=later))

    # Then enterprise counts all 100 calls of the period: the 60 on pro and the 40 carried into pro
    assert status == HTTPStatus.OK
    assert remaining_today(stack, "enterprise", partner.api_key_id) == quota(template, "enterprise") - 100


# --- Fail closed ---------------------------------------------------------------------------------------------


def _forged(secrets: dict[str, str], body: str) -> dict[str, str]:
    return stripe_headers(body, generate_signing_secret())


def _stale_stripe(secrets: dict[str, str], body: str) -> dict[str, str]:
    return stripe_headers(body, secrets["stripe"], int(time.time()) - 330)


def _future_stripe(secrets: dict[str, str], body: str) -> dict[str, str]:
    return stripe_headers(body, secrets["stripe"], int(time.time()) + 400)


def _stale_standard(secrets: dict[str, str], body: str) -> dict[str, str]:
    return standard_headers(body, secrets["standard"], timestamp=datetime.now(UTC) - timedelta(minutes=6))


def _future_standard(secrets: dict[str, str], body: str) -> dict[str, str]:
    return standard_headers(body, secrets["standard"], timestamp=datetime.now(UTC) + timedelta(minutes=6))


def _tampered(secrets: dict[str, str], body: str) -> dict[str, str]:
    # Signed for the free tier; the body sent asks for pro.
    return stripe_headers(body.replace('"lookup_key":"pro"', '"lookup_key":"free"'), secrets["stripe"])


def _missing(secrets: dict[str, str], body: str) -> dict[str, str]:
    return {}


def _standard_without_signature(secrets: dict[str, str], body: str) -> dict[str, str]:
    headers = standard_headers(body, secrets["standard"])
    del headers["webhook-signature"]
    return headers


def _both_schemes(secrets: dict[str, str], body: str) -> dict[str, str]:
    return {**stripe_headers(body, secrets["stripe"]), **standard_headers(body, secrets["standard"])}


def _malformed_stripe(secrets: dict[str, str], body: str) -> dict[str, str]:
    return {"Stripe-Signature": "sha256=deadbeef"}


def _malformed_standard(secrets: dict[str, str], body: str) -> dict[str, str]:
    return {**standard_headers(body, secrets["standard"]), "webhook-signature": "v1"}


def _signed_tomorrow_with_a_second_timestamp(secrets: dict[str, str], body: str) -> dict[str, str]:
    # stripe verifies the first t= (tomorrow); a second one of now must not pass the "ahead" check for it.
    header = stripe_headers(body, secrets["stripe"], int(time.time()) + 86_400)["Stripe-Signature"]
    return {"Stripe-Signature": f"{header},t={int(time.time())}"}


def _stripe_timestamp_with_a_tail(secrets: dict[str, str], body: str) -> dict[str, str]:
    now = int(time.time())
    header = stripe_headers(body, secrets["stripe"], now)["Stripe-Signature"]
    return {"Stripe-Signature": header.replace(f"t={now}", f"t={now}=x")}


def _stripe_with_a_trailing_non_numeric_timestamp(secrets: dict[str, str], body: str) -> dict[str, str]:
    return {"Stripe-Signature": stripe_headers(body, secrets["stripe"])["Stripe-Signature"] + ",t=abc"}


UNAUTHORIZED = (HTTPStatus.UNAUTHORIZED, "invalid_signature")
MALFORMED = (HTTPStatus.BAD_REQUEST, "malformed_signature")
REFUSED_SIGNATURES = [
    (_forged, UNAUTHORIZED, "does not match"),
    (_stale_stripe, UNAUTHORIZED, "outside the 5-minute tolerance"),
    (_future_stripe, UNAUTHORIZED, "outside the 5-minute tolerance"),
    (_stale_standard, UNAUTHORIZED, "outside the 5-minute tolerance"),
    (_future_standard, UNAUTHORIZED, "outside the 5-minute tolerance"),
    (_tampered, UNAUTHORIZED, "does not match"),
    (_missing, UNAUTHORIZED, "missing signature"),
    (_standard_without_signature, UNAUTHORIZED, "missing webhook-signature"),
    (_both_schemes, UNAUTHORIZED, "not both"),
    (_malformed_stripe, MALFORMED, "malformed"),
    (_malformed_standard, MALFORMED, "malformed"),
    (_signed_tomorrow_with_a_second_timestamp, MALFORMED, "malformed"),
    (_stripe_timestamp_with_a_tail, MALFORMED, "malformed"),
    (_stripe_with_a_trailing_non_numeric_timestamp, MALFORMED, "malformed"),
]


def test_a_delivery_whose_signature_does_not_verify_is_refused_and_changes_nothing(
    stack: ProvisionedStack, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given a free partner, and an upgrade to pro
    partner = sign_up()
    body = body_of(stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro"))

    for sign, (expected_status, code), message in REFUSED_SIGNATURES:
        # When it is delivered with a bad, stale, forged, tampered, malformed or missing signature
        status, answer = post(body, sign(secrets, body))

        # Then it is refused with a clear reason: 400 for headers that do not parse, 401 for the rest
        assert status == expected_status, sign.__name__
        assert answer["error"]["code"] == code, sign.__name__
        assert message in answer["error"]["message"], sign.__name__

    # And nothing changed anywhere: plan, record, notifications, processed events
    assert tiers_holding(partner.api_key_id, stack) == ["free"]
    record, state = partner_of(partner.partner_id)
    assert (record.tier, state.tier_event_id, state.tier_change) == ("free", None, None)
    assert operator_messages(operator_inbox) == []
    idempotency = boto3.client("dynamodb").scan(TableName=stack.physical_ids["IdempotencyTable"])["Items"]
    assert [item for item in idempotency if "tier_changes" in item["id"]["S"]] == []


def test_the_signature_is_checked_on_the_raw_body_of_a_base64_delivery(
    stack: ProvisionedStack, secrets: dict[str, str]
) -> None:
    # Given API Gateway passing the body base64-encoded (isBase64Encoded)
    partner = sign_up()
    body = body_of(stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro"))

    # When it is delivered with a valid signature over the raw bytes
    status, answer = post(body, stripe_headers(body, secrets["stripe"]), base64_body=True)

    # Then it verifies and applies
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")


def test_secrets_being_rotated_are_all_accepted_and_a_removed_one_is_not(
    stack: ProvisionedStack, secrets: dict[str, str]
) -> None:
    # Given two active Standard Webhooks secrets (the old one and its replacement)
    partner = sign_up()
    old, new = secrets["standard"], generate_signing_secret()
    secret_arn = stack.secrets["BillingWebhookSecret"]
    manager = boto3.client("secretsmanager")
    manager.put_secret_value(
        SecretId=secret_arn, SecretString=json.dumps({"stripe": [secrets["stripe"]], "standard": [new, old]})
    )
    tier_change_service.cache_clear()

    # When events arrive signed with either
    now = datetime.now(UTC)
    first = body_of(generic_event(partner_id=partner.partner_id, tier="pro", at=now))
    second = body_of(generic_event(partner_id=partner.partner_id, tier="enterprise", at=now + timedelta(seconds=1)))
    assert post(first, standard_headers(first, old))[0] == HTTPStatus.OK
    assert post(second, standard_headers(second, new))[0] == HTTPStatus.OK

    # Then, once the old one is removed (and the cached secret expired), it no longer verifies
    manager.put_secret_value(SecretId=secret_arn, SecretString=json.dumps({"stripe": [], "standard": [new]}))
    tier_change_service.cache_clear()
    third = body_of(generic_event(partner_id=partner.partner_id, tier="free", at=now + timedelta(seconds=2)))
    assert post(third, standard_headers(third, old))[0] == HTTPStatus.UNAUTHORIZED
    # And a scheme with no secret at all is unavailable (503, retried later), never accepted
    status, answer = send_stripe(secrets, stripe_subscription_event(partner_id=partner.partner_id))
    assert (status, answer["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "signing_secret_unavailable")
    assert partner_of(partner.partner_id)[0].tier == "enterprise"


def test_event_types_we_do_not_handle_are_acknowledged_and_ignored(
    stack: ProvisionedStack, secrets: dict[str, str], powertools_log: io.StringIO
) -> None:
    partner = sign_up()
    invoice = stripe_subscription_event(partner_id=partner.partner_id, event_type="invoice.paid")
    incomplete = stripe_subscription_event(partner_id=partner.partner_id, status="incomplete")
    other = generic_event(partner_id=partner.partner_id, event_type="subscription.trial_will_end")

    answers = [send_stripe(secrets, invoice), send_stripe(secrets, incomplete), send_generic(secrets, other)]

    assert [(status, answer["status"]) for status, answer in answers] == [(HTTPStatus.OK, "ignored")] * 3
    assert tiers_holding(partner.api_key_id, stack) == ["free"]
    assert partner_of(partner.partner_id)[1].tier_event_id is None
    lines = [json.loads(line) for line in powertools_log.getvalue().splitlines()]
    ignored = [line for line in lines if line["message"] == "ignored billing event"]
    assert [line["level"] for line in ignored] == ["INFO"] * 3


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"lookup_key": "gold", "price_id": "price_gold"}, "unprocessable_event"),
        ({"lookup_key": None, "price_id": "price_unmapped"}, "unprocessable_event"),
    ],
)
def test_a_subscription_whose_price_maps_to_no_tier_is_unprocessable(
    stack: ProvisionedStack, secrets: dict[str, str], payload: dict[str, Any], code: str
) -> None:
    partner = sign_up()
    status, answer = send_stripe(secrets, stripe_subscription_event(partner_id=partner.partner_id, **payload))

    assert (status, answer["error"]["code"]) == (HTTPStatus.UNPROCESSABLE_ENTITY, code)
    assert "lookup_key" in answer["error"]["message"]
    assert tiers_holding(partner.api_key_id, stack) == ["free"]


def test_a_verified_body_that_is_not_an_event_is_a_400(stack: ProvisionedStack, secrets: dict[str, str]) -> None:
    body = '{"type": "subscription.updated", "data": {"tier": "pro"}}'
    status, answer = post(body, standard_headers(body, secrets["standard"]))

    assert (status, answer["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request")
    assert {detail["field"] for detail in answer["error"]["details"]} == {"timestamp", "data.partner_id"}


# --- Exactly once, in order ----------------------------------------------------------------------------------


def test_a_duplicate_delivery_changes_nothing_the_second_time(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given an upgrade applied once
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 10)
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    assert send_stripe(secrets, event)[0] == HTTPStatus.OK
    use(stack, "pro", partner.api_key_id, 5)

    # When Stripe delivers the same event again (re-signed, as a retry is), and a Standard Webhooks
    # sender repeats a message id
    status, answer = send_stripe(secrets, event)
    generic = generic_event(partner_id=partner.partner_id, tier="enterprise")
    first_generic = send_generic(secrets, generic, message_id="msg_once")
    again_generic = send_generic(secrets, generic, message_id="msg_once")

    # Then the repeats answer 200 and change nothing: one move each, usage not carried twice, one message each
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")  # the stored answer of the first delivery
    assert (first_generic[1]["status"], again_generic[1]["status"]) == ("applied", "applied")
    assert remaining_today(stack, "enterprise", partner.api_key_id) == quota(template, "enterprise") - 15
    assert [message["tier"] for message in operator_messages(operator_inbox)] == ["pro", "enterprise"]


def test_a_duplicate_after_the_processed_record_expired_is_still_recognised(
    stack: ProvisionedStack, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given an applied event whose processed-event record is gone (expired by TTL)
    partner = sign_up()
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    assert send_stripe(secrets, event)[0] == HTTPStatus.OK
    dynamodb = boto3.client("dynamodb")
    table = stack.physical_ids["IdempotencyTable"]
    for item in dynamodb.scan(TableName=table)["Items"]:
        dynamodb.delete_item(TableName=table, Key={"id": item["id"]})

    # When it is delivered again
    status, answer = send_stripe(secrets, event)

    # Then the partner record recognises it by its id
    assert (status, answer["status"]) == (HTTPStatus.OK, "duplicate")
    assert len(operator_messages(operator_inbox)) == 1


@pytest.mark.parametrize("order", [("older", "newer"), ("newer", "older")])
def test_events_out_of_order_never_roll_the_tier_back(
    stack: ProvisionedStack, secrets: dict[str, str], order: tuple[str, str]
) -> None:
    # Given an upgrade to pro and a later one to enterprise
    partner = sign_up()
    now = int(time.time())
    events = {
        "older": stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro", created=now - 60),
        "newer": stripe_subscription_event(partner_id=partner.partner_id, lookup_key="enterprise", created=now - 30),
    }

    # When they arrive in either order
    answers = [send_stripe(secrets, events[name])[1]["status"] for name in order]

    # Then the newer one wins, and the older one, if last, is acknowledged as stale
    assert tiers_holding(partner.api_key_id, stack) == ["enterprise"]
    assert partner_of(partner.partner_id)[0].tier == "enterprise"
    assert answers == (["applied", "applied"] if order[0] == "older" else ["applied", "stale"])


def test_a_change_in_progress_for_the_partner_makes_another_event_wait(
    stack: ProvisionedStack, secrets: dict[str, str]
) -> None:
    # Given another event's change holding the partner's lock
    partner = sign_up()
    first = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    with dies_before("api-gateway", "DeleteUsagePlanKey"), pytest.raises(LambdaTimedOut):
        send_stripe(secrets, first)

    # When a second event for the partner arrives
    second = generic_event(partner_id=partner.partner_id, tier="enterprise")
    status, answer = send_generic(secrets, second)

    # Then it is told to retry after the lock's lease, and changed nothing
    assert (status, answer["error"]["code"]) == (HTTPStatus.CONFLICT, "change_in_progress")
    assert 0 < int(answer["_headers"]["Retry-After"]) <= 60
    assert tiers_holding(partner.api_key_id, stack) == ["free"]


# --- Failures half-way ---------------------------------------------------------------------------------------


def test_an_attach_failure_puts_the_key_back_on_its_old_plan(
    stack: ProvisionedStack, secrets: dict[str, str], operator_inbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a free partner
    partner = sign_up()
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")

    # When API Gateway refuses to attach the key to the pro plan
    with fails_once("api-gateway", "CreateUsagePlanKey", "BadRequestException") as injected:
        status, answer = send_stripe(secrets, event)

    # Then the key is back on the free plan, nothing else changed, and the sender is told to retry
    assert injected() == 1
    assert (status, answer["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "tier_change_failed")
    assert "Retry-After" in answer["_headers"]
    assert '"TierChangeFailures"' in capsys.readouterr().out
    assert tiers_holding(partner.api_key_id, stack) == ["free"]
    assert key_enabled(partner.api_key_id)
    assert partner_of(partner.partner_id)[0].tier == "free"
    assert operator_messages(operator_inbox) == []

    # And the retry (the lock was released) applies it
    status, answer = send_stripe(secrets, event)
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]


def _expire_leases(stack: ProvisionedStack, partner_id: str) -> None:
    """What the passing of time does after a killed invocation: its lock and its in-progress record expire."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.update_item(
        TableName=stack.physical_ids["PartnersTable"],
        Key={"pk": {"S": f"PARTNER#{partner_id}"}},
        UpdateExpression="SET tier_change.lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )
    table = stack.physical_ids["IdempotencyTable"]
    for item in dynamodb.scan(TableName=table)["Items"]:
        if item.get("status", {}).get("S") == "INPROGRESS":
            dynamodb.delete_item(TableName=table, Key={"id": item["id"]})


def test_a_change_killed_between_detach_and_attach_is_finished_by_the_retry(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str]
) -> None:
    # Given a free partner with 40 calls today, and an upgrade killed right after the key left its plan
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 40)
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    with dies_before("api-gateway", "CreateUsagePlanKey"), pytest.raises(LambdaTimedOut):
        send_stripe(secrets, event)
    assert tiers_holding(partner.api_key_id, stack) == []

    # When Stripe retries after the dead invocation's lease
    _expire_leases(stack, partner.partner_id)
    status, answer = send_stripe(secrets, event)

    # Then the key lands on pro with the usage the dead attempt had journaled
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 40
    assert partner_of(partner.partner_id)[1].tier_change is None


def test_a_change_killed_before_carrying_usage_is_finished_by_the_retry(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str]
) -> None:
    # Given an upgrade killed after the move, before UpdateUsage
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 25)
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    with dies_before("api-gateway", "UpdateUsage"), pytest.raises(LambdaTimedOut):
        send_stripe(secrets, event)
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro")

    # When it is retried
    _expire_leases(stack, partner.partner_id)
    assert send_stripe(secrets, event)[0] == HTTPStatus.OK

    # Then the usage is carried over once
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 25


def test_a_failed_notification_is_sent_by_the_retry(
    stack: ProvisionedStack, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given an upgrade whose notification SNS refused
    partner = sign_up()
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    with fails_once("sns", "Publish", "InternalError", 500):
        status, _ = send_stripe(secrets, event)
    assert status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]

    # When the billing system retries
    status, answer = send_stripe(secrets, event)

    # Then the change is not made again, and the operators get their one message
    assert (status, answer["status"]) == (HTTPStatus.OK, "duplicate")
    [message] = operator_messages(operator_inbox)
    assert message["tier"] == "pro"
    assert "moved from the free tier to the pro tier" in message["body"]


# --- Cancel and return ---------------------------------------------------------------------------------------


def test_cancellation_disables_the_key_and_a_new_subscription_enables_it_on_its_plan(
    stack: ProvisionedStack, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given a pro partner
    partner = sign_up()
    now = int(time.time())
    upgrade = stripe_subscription_event(partner_id=partner.partner_id, created=now - 60)
    assert send_stripe(secrets, upgrade)[0] == HTTPStatus.OK

    # When its subscription is deleted
    deleted = stripe_subscription_event(
        partner_id=partner.partner_id, event_type="customer.subscription.deleted", status="canceled", created=now - 30
    )
    status, answer = send_stripe(secrets, deleted)

    # Then its key is disabled (it stays in its plan) and the record says so
    assert (status, answer["partner_status"]) == (HTTPStatus.OK, "DISABLED")
    assert not key_enabled(partner.api_key_id)
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert partner_of(partner.partner_id)[0].status is PartnerStatus.DISABLED

    # When it subscribes again, to enterprise
    created = stripe_subscription_event(
        partner_id=partner.partner_id, event_type="customer.subscription.created", lookup_key="enterprise"
    )
    status, answer = send_stripe(secrets, created)

    # Then the same key is enabled again, on the enterprise plan
    assert (status, answer["tier"], answer["partner_status"]) == (HTTPStatus.OK, "enterprise", "ACTIVE")
    assert key_enabled(partner.api_key_id)
    assert tiers_holding(partner.api_key_id, stack) == ["enterprise"]
    subjects = [message["subject"] for message in operator_messages(operator_inbox)]
    assert subjects[1:] == [
        f"Tier change: {partner.partner_id} disabled",
        f"Tier change: {partner.partner_id} enabled again on enterprise",
    ]


def test_cancellation_moves_the_key_to_free_when_the_stack_says_so(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given CancellationMode=move-to-free and a pro partner that used more than free allows today
    monkeypatch.setenv("CANCELLATION_MODE", "move-to-free")
    forget_settings()
    tier_change_service.cache_clear()
    partner = sign_up()
    assert send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="pro"))[0] == HTTPStatus.OK
    use(stack, "pro", partner.api_key_id, quota(template, "free") + 1)

    # When the subscription is cancelled
    later = datetime.now(UTC) + timedelta(seconds=1)
    cancel = generic_event(partner_id=partner.partner_id, tier=None, event_type="subscription.canceled", at=later)
    status, answer = send_generic(secrets, cancel)

    # Then the key stays enabled, on free, with no fresh quota
    assert (status, answer["tier"], answer["partner_status"]) == (HTTPStatus.OK, "free", "ACTIVE")
    assert key_enabled(partner.api_key_id)
    assert tiers_holding(partner.api_key_id, stack) == ["free"]
    assert remaining_today(stack, "free", partner.api_key_id) == 0


# --- Finding the partner -------------------------------------------------------------------------------------


def test_the_billing_customer_finds_the_partner_once_an_event_linked_them(
    stack: ProvisionedStack, secrets: dict[str, str]
) -> None:
    # Given an event with metadata.partner_id and a customer id
    partner = sign_up()
    now = int(time.time())
    first = stripe_subscription_event(partner_id=partner.partner_id, customer="cus_LINKED1", created=now - 60)
    assert send_stripe(secrets, first)[0] == HTTPStatus.OK

    # When a later event names only the customer
    later = stripe_subscription_event(partner_id=None, customer="cus_LINKED1", lookup_key="enterprise", created=now)
    status, answer = send_stripe(secrets, later)

    # Then it applies to the same partner
    assert (status, answer["partner_id"], answer["tier"]) == (HTTPStatus.OK, partner.partner_id, "enterprise")


def _sign_up_as(partner_id: str, monkeypatch: pytest.MonkeyPatch) -> Partner:
    """Signup, with the partner id it will draw fixed in advance (a partner the billing system already knows)."""
    hex_id = partner_id.removeprefix("p_")
    monkeypatch.setattr(core.signup.service, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=hex_id)))
    return sign_up()


def test_an_event_for_a_partner_not_known_yet_is_recorded_and_applied_on_a_retry(
    stack: ProvisionedStack,
    secrets: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an upgrade for a partner whose signup has not finished yet
    partner_id = f"p_{uuid.uuid4().hex}"
    event = stripe_subscription_event(partner_id=partner_id, lookup_key="pro")

    # When it is delivered
    status, answer = send_stripe(secrets, event)

    # Then it is recorded, counted, and the sender is told to retry
    assert (status, answer["error"]["code"]) == (HTTPStatus.CONFLICT, "partner_not_found_yet")
    assert int(answer["_headers"]["Retry-After"]) > 0
    unmatched = boto3.client("dynamodb").get_item(
        TableName=stack.physical_ids["PartnersTable"], Key={"pk": {"S": f"UNMATCHED#stripe#{event['id']}"}}
    )["Item"]
    assert (unmatched["deliveries"]["N"], unmatched["event"]["M"]["tier"]["S"]) == ("1", "pro")
    assert '"UnknownPartnerEvents"' in capsys.readouterr().out

    # When the partner exists and the billing system retries
    partner = _sign_up_as(partner_id, monkeypatch)
    status, answer = send_stripe(secrets, event)

    # Then the event applies, and its record is gone
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert "Item" not in boto3.client("dynamodb").get_item(
        TableName=stack.physical_ids["PartnersTable"], Key={"pk": {"S": f"UNMATCHED#stripe#{event['id']}"}}
    )


def test_an_event_still_unknown_after_the_retry_window_is_parked_and_acknowledged(
    stack: ProvisionedStack,
    secrets: dict[str, str],
    operator_inbox: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the retry window over (UnknownPartnerRetrySeconds=0)
    monkeypatch.setenv("UNKNOWN_PARTNER_RETRY_SECONDS", "0")
    forget_settings()
    tier_change_service.cache_clear()
    partner_id = f"p_{uuid.uuid4().hex}"
    event = generic_event(partner_id=partner_id, tier="pro")

    # When an event for an unknown partner arrives
    status, answer = send_generic(secrets, event, message_id="msg_unknown")

    # Then it is acknowledged as recorded (the sender stops), operators are alerted, the alarm's metric counts
    assert (status, answer["status"]) == (HTTPStatus.ACCEPTED, "recorded")
    [message] = operator_messages(operator_inbox)
    assert (message["kind"], message["partner_id"], message["event_id"]) == (
        "billing-event-unmatched",
        partner_id,
        "msg_unknown",
    )
    assert '"UnmatchedBillingEvents"' in capsys.readouterr().out

    # And once the partner exists, a redelivery (an operator's resend) is applied, not answered from memory
    partner = _sign_up_as(partner_id, monkeypatch)
    status, answer = send_generic(secrets, event, message_id="msg_unknown")
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]


# --- Secrets stay secret -------------------------------------------------------------------------------------


def test_no_secret_signature_or_key_value_reaches_the_logs(
    stack: ProvisionedStack,
    secrets: dict[str, str],
    powertools_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    result = signup_service().sign_up(SignupRequest(name="Acme", email="leak@acme.example"))
    body = body_of(stripe_subscription_event(partner_id=result.partner_id, lookup_key="pro"))
    headers = stripe_headers(body, secrets["stripe"])
    post(body, headers)
    post(body, stripe_headers(body, generate_signing_secret()))  # refused
    standard = body_of(generic_event(partner_id=result.partner_id, tier="enterprise"))
    standard_signed = standard_headers(standard, secrets["standard"])
    post(standard, standard_signed)

    everything = powertools_log.getvalue() + caplog.text + capsys.readouterr().out
    assert "applied tier change" in everything
    assert result.api_key is not None
    for secret in (*secrets.values(), headers["Stripe-Signature"], standard_signed["webhook-signature"]):
        assert secret not in everything
    assert result.api_key.get_secret_value() not in everything


# --- Hostile bodies behind a valid signature -------------------------------------------------------------------


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _stripe_event_with(partner_id: str, **overrides: Any) -> str:
    event = stripe_subscription_event(partner_id=partner_id, lookup_key="pro")
    event.update(overrides)
    return body_of(event)


HOSTILE_SIGNED_BODIES = [
    ("json nested 100,000 deep", "stripe", lambda partner_id: _deep(100_000), "nested too deeply"),
    ("json nested 100,000 deep", "standard", lambda partner_id: _deep(100_000), "nested too deeply"),
    (
        "object nested 900 deep in the event",
        "stripe",
        lambda partner_id: _stripe_event_with(partner_id, extra=json.loads('{"a":' * 900 + "1" + "}" * 900)),
        "nested too deeply",
    ),
    (
        "stripe event id of 256 characters",
        "stripe",
        lambda partner_id: _stripe_event_with(partner_id, id="e" * 256),
        "id",
    ),
    (
        "event type of 10,000 characters",
        "stripe",
        lambda partner_id: _stripe_event_with(partner_id, type="t" * 10_000),
        "type",
    ),
    (
        "customer id of 10,000 characters",
        "stripe",
        lambda partner_id: body_of(stripe_subscription_event(partner_id=None, customer="c" * 10_000)),
        "customer",
    ),
    (
        "metadata.partner_id of 10,000 characters",
        "stripe",
        lambda partner_id: body_of(stripe_subscription_event(partner_id="p" * 10_000)),
        "partner_id",
    ),
    (
        "created that is not a number",
        "stripe",
        lambda partner_id: _stripe_event_with(partner_id, created="soon"),
        "created",
    ),
    ("created beyond any date", "stripe", lambda partner_id: _stripe_event_with(partner_id, created=10**30), "created"),
]


@pytest.mark.parametrize(
    ("scheme", "make_body", "message"), [pytest.param(*rest, id=case) for case, *rest in HOSTILE_SIGNED_BODIES]
)
def test_a_hostile_body_behind_a_valid_signature_gets_a_4xx_and_changes_nothing(
    stack: ProvisionedStack, secrets: dict[str, str], scheme: str, make_body: Any, message: str
) -> None:
    # Given a free partner, and a body signed with the right secret that is hostile in one way
    partner = sign_up()
    body = make_body(partner.partner_id)
    headers = (
        stripe_headers(body, secrets["stripe"]) if scheme == "stripe" else standard_headers(body, secrets["standard"])
    )

    # When it is delivered
    status, answer = post(body, headers)

    # Then it is refused with a 400 in the documented shape, and nothing changed
    assert status == HTTPStatus.BAD_REQUEST, answer
    assert answer["error"]["code"] == "invalid_request"
    assert message in json.dumps(answer["error"])
    assert tiers_holding(partner.api_key_id, stack) == ["free"]


def test_a_standard_webhooks_message_id_over_255_characters_gets_a_400(
    stack: ProvisionedStack, secrets: dict[str, str]
) -> None:
    # Given a generic upgrade whose webhook-id (its event id) is 256 characters long
    partner = sign_up()
    body = body_of(generic_event(partner_id=partner.partner_id, tier="pro"))

    # When it is delivered, correctly signed
    status, answer = post(body, standard_headers(body, secrets["standard"], message_id="m" * 256))

    # Then it is refused with a 400 naming the header, and nothing changed
    assert (status, answer["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), answer
    assert "webhook-id" in json.dumps(answer["error"])
    assert tiers_holding(partner.api_key_id, stack) == ["free"]


@pytest.mark.parametrize("scheme", ["stripe", "standard"])
def test_an_event_dated_after_its_signature_is_refused_and_does_not_freeze_the_tier(
    stack: ProvisionedStack, secrets: dict[str, str], scheme: str
) -> None:
    # Given a free partner, and a correctly signed upgrade dated a year ahead
    partner = sign_up()
    next_year = datetime.now(UTC) + timedelta(days=365)
    if scheme == "stripe":
        event = stripe_subscription_event(
            partner_id=partner.partner_id, lookup_key="pro", created=int(next_year.timestamp())
        )
        status, answer = send_stripe(secrets, event)
    else:
        status, answer = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="pro", at=next_year))

    # Then it is refused with a 400 naming the event's date, and the tier is unchanged
    assert (status, answer["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), answer
    assert answer["error"]["details"][0]["field"] == ("created" if scheme == "stripe" else "timestamp")
    assert partner_of(partner.partner_id)[1].tier_event_id is None

    # And a real event sent now still applies (nothing was left ordered after it)
    status, answer = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="enterprise"))
    assert (status, answer["status"], answer["tier"]) == (HTTPStatus.OK, "applied", "enterprise")


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_two_events_in_the_same_second_are_ordered_by_event_id(
    stack: ProvisionedStack, secrets: dict[str, str], order: tuple[str, str]
) -> None:
    # Given two Stripe events of one partner created in the same second (Stripe's `created` has 1 s resolution)
    partner = sign_up()
    now = int(time.time())
    suffix = uuid.uuid4().hex[:12]
    events = {
        "a": stripe_subscription_event(
            partner_id=partner.partner_id, lookup_key="enterprise", created=now, event_id=f"evt_a{suffix}"
        ),
        "b": stripe_subscription_event(
            partner_id=partner.partner_id, lookup_key="pro", created=now, event_id=f"evt_b{suffix}"
        ),
    }

    # When they arrive in either order
    answers = [send_stripe(secrets, events[name])[1]["status"] for name in order]

    # Then the greater event id wins in both orders, and the lesser one, if last, is stale
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert partner_of(partner.partner_id)[1].tier_event_id == f"evt_b{suffix}"
    assert answers == (["applied", "applied"] if order[0] == "a" else ["applied", "stale"])


def test_a_failed_put_back_after_a_failed_attach_is_finished_by_the_retry_with_the_usage_carried(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given a free partner with 40 calls today, upgrading to pro
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 40)
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")

    # When API Gateway throttles both the attach to pro and the put-back on free
    with (
        fails_once("api-gateway", "CreateUsagePlanKey", "TooManyRequestsException", 429) as attach,
        fails_once("api-gateway", "CreateUsagePlanKey", "TooManyRequestsException", 429) as put_back,
    ):
        status, answer = send_stripe(secrets, event)

    # Then the sender is told to retry at once, and the change's journal (the usage to carry) is kept for it
    assert (attach(), put_back()) == (1, 1)
    assert (status, answer["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "tier_change_failed")
    assert "Retry-After" in answer["_headers"]
    _, state = partner_of(partner.partner_id)
    assert state.tier_change is not None
    assert (state.tier_change.carried, state.tier_change.lease_until) == (40, 0)
    assert operator_messages(operator_inbox) == []

    # And the retry finishes the move, with the 40 calls carried once
    status, answer = send_stripe(secrets, event)
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 40
    assert key_enabled(partner.api_key_id)
    assert partner_of(partner.partner_id)[1].tier_change is None


def test_a_change_that_lost_its_lock_before_finishing_overwrites_nothing_and_its_retry_applies_once(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str], operator_inbox: str
) -> None:
    # Given a free partner with 30 calls today, upgrading to pro
    partner = sign_up()
    use(stack, "free", partner.api_key_id, 30)
    event = stripe_subscription_event(partner_id=partner.partner_id, lookup_key="pro")
    dynamodb = boto3.client("dynamodb")

    taken_over = []

    def another_event_takes_the_lock(**_: Any) -> None:
        # The change ran past its lease, and another event's delivery took the expired lock over (once: a
        # client created meanwhile keeps a copy of the session's hooks, so unregistering does not reach it).
        if taken_over:
            return
        taken_over.append(True)
        dynamodb.update_item(
            TableName=stack.physical_ids["PartnersTable"],
            Key={"pk": {"S": f"PARTNER#{partner.partner_id}"}},
            UpdateExpression="SET tier_change.event_id = :other, tier_change.lease_until = :later",
            ExpressionAttributeValues={":other": {"S": "evt_other"}, ":later": {"N": str(int(time.time()) + 60)}},
        )

    # When the lock is taken over while the key is being moved (just before UpdateUsage), so that the final
    # conditional write fails as DynamoDB fails it (ConditionalCheckFailedException)
    events = boto3._get_default_session().events
    events.register("before-call.api-gateway.UpdateUsage", another_event_takes_the_lock)
    try:
        status, answer = send_stripe(secrets, event)
    finally:
        events.unregister("before-call.api-gateway.UpdateUsage", another_event_takes_the_lock)

    # Then this delivery is answered "retry", wrote no tier, published nothing
    assert taken_over == [True]
    assert (status, answer["error"]["code"]) == (HTTPStatus.CONFLICT, "change_in_progress"), answer
    record, state = partner_of(partner.partner_id)
    assert (record.tier, state.tier_event_id) == ("free", None)
    assert operator_messages(operator_inbox) == []

    # And once the lock is free again, the retry applies the change with the usage carried exactly once
    _expire_leases(stack, partner.partner_id)
    status, answer = send_stripe(secrets, event)
    assert (status, answer.get("status")) == (HTTPStatus.OK, "applied"), answer
    assert tiers_holding(partner.api_key_id, stack) == ["pro"]
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 30
    assert partner_of(partner.partner_id)[0].tier == "pro"
    assert len(operator_messages(operator_inbox)) == 1


# --- GetUsage lags on AWS: the carry-over also reads the AI API's ledger ------------------------------------------


@pytest.fixture
def usage_lag() -> Iterator[None]:
    """GetUsage 30 minutes behind the requests, as AWS allows."""
    apigateway_fidelity.set_usage_lag(1800)
    yield
    apigateway_fidelity.set_usage_lag(None)


def burst(stack: ProvisionedStack, tier: str, key_id: str, requests: int) -> None:
    """`requests` calls just now through the gateway and the AI API: GetUsage does not show them yet, the AI
    API's ledger (MeteringTable, the key's item for the tier's current period) has counted them."""
    use(stack, tier, key_id, requests)
    day_period = f"PERIOD#{today()}T00:00:00Z"  # the free tier's period is a day
    boto3.client("dynamodb").update_item(
        TableName=stack.physical_ids["MeteringTable"],
        Key={"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": day_period}},
        UpdateExpression="ADD requests :n SET tier = :tier",
        ExpressionAttributeValues={":n": {"N": str(requests)}, ":tier": {"S": tier}},
    )


@pytest.mark.usefixtures("usage_lag")
def test_an_upgrade_right_after_a_burst_carries_the_burst_getusage_does_not_show_yet(
    stack: ProvisionedStack, template: StackTemplate, secrets: dict[str, str]
) -> None:
    # Given a free partner that made 70 calls in the last minutes (not in GetUsage yet)
    partner = sign_up()
    burst(stack, "free", partner.api_key_id, 70)

    # When it upgrades to pro
    status, answer = send_generic(secrets, generic_event(partner_id=partner.partner_id, tier="pro"))

    # Then the 70 calls count against pro: none is forgiven by the move
    assert (status, answer["status"]) == (HTTPStatus.OK, "applied")
    apigateway_fidelity.set_usage_lag(0)
    assert remaining_today(stack, "pro", partner.api_key_id) == quota(template, "pro") - 70
