"""Signup at the account's API key ceiling (10,000 per Region on AWS; the fidelity layer enforces a lower one
here): one CreateApiKey, no retry, 503 `capacity_exhausted` at once, and nothing left behind."""

import json
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.adapters.apigateway import ApiGateway
from core.settings import load_settings
from core.signup.adapters.partners import SignupPartners
from core.signup.service import SignupSweep, signup_service
from core.signup.settings import SignupSettings
from handlers import signup
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from tests.faults import fails_once
from tests.lambda_events import LambdaContext, signup_event

pytestmark = pytest.mark.usefixtures("signup_env")


@pytest.fixture
def full_account(stack: ProvisionedStack) -> Iterator[str]:
    """An account that may hold one API key and holds it (a partner signed up); that key's id. The management
    API's rate limits are off, so every CreateApiKey counted is a ceiling answer (a 429 TooManyRequests from a
    bucket earlier tests drained would be retried, rightly, and counted)."""
    apigateway_fidelity.set_management_rate_limits(False)
    apigateway_fidelity.set_api_key_limit(1)
    first = sign_up("first@acme.example")
    assert first["statusCode"] == HTTPStatus.CREATED, first
    # The next signup makes new clients, which take the event hooks (counters, faults) a test registers.
    signup_service.cache_clear()
    yield json.loads(first["body"])["api_key_id"]
    apigateway_fidelity.set_api_key_limit(None)
    apigateway_fidelity.set_management_rate_limits(None)


@pytest.fixture
def create_api_key_requests() -> Iterator[list[int]]:
    """Every CreateApiKey request sent on the wire (botocore's retries included), by clients made from now on."""
    sent: list[int] = []

    def count(**_: Any) -> None:
        sent.append(1)

    events = boto3._get_default_session().events
    events.register("before-send.api-gateway.CreateApiKey", count)
    yield sent
    events.unregister("before-send.api-gateway.CreateApiKey", count)


def sign_up(email: str) -> dict[str, Any]:
    response: dict[str, Any] = signup.handler(signup_event({"name": "Acme", "email": email}), LambdaContext())
    return response


def email_locks(stack: ProvisionedStack) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=stack.physical_ids["PartnersTable"])["Items"]
    return [item for item in items if item["pk"]["S"].startswith("EMAIL#") and item["status"]["S"] == "PENDING"]


def api_key_ids() -> list[str]:
    return [key["id"] for key in boto3.client("apigateway").get_api_keys(limit=500)["items"]]


def test_signup_at_the_ceiling_answers_503_capacity_exhausted_without_retrying(
    stack: ProvisionedStack, full_account: str, create_api_key_requests: list[int]
) -> None:
    # Given an account at its API key ceiling
    # When someone else signs up
    started = time.monotonic()
    response = sign_up("second@acme.example")

    # Then API Gateway was asked once (botocore's standard mode would retry LimitExceededException as
    # throttling), and the caller hears at once that no key can be issued, with no Retry-After to wait for
    assert len(create_api_key_requests) == 1
    assert time.monotonic() - started < 1
    assert response["statusCode"] == HTTPStatus.SERVICE_UNAVAILABLE
    error = json.loads(response["body"])["error"]
    assert error["code"] == "capacity_exhausted"
    assert "limit of API keys" in error["message"]
    assert "Retry-After" not in (response.get("multiValueHeaders") or {})
    # And nothing is half-done: only the first partner's key, no pending lock
    assert api_key_ids() == [full_account]
    assert email_locks(stack) == []


def test_a_signup_after_a_key_was_deleted_succeeds(stack: ProvisionedStack, full_account: str) -> None:
    # Given a refusal at the ceiling
    assert sign_up("second@acme.example")["statusCode"] == HTTPStatus.SERVICE_UNAVAILABLE

    # When the operator deletes a key, and the same person signs up again
    boto3.client("apigateway").delete_api_key(apiKey=full_account)
    response = sign_up("second@acme.example")

    # Then the address was not left taken: the signup goes through
    assert response["statusCode"] == HTTPStatus.CREATED, response


def test_a_lock_whose_release_failed_at_the_ceiling_is_swept(stack: ProvisionedStack, full_account: str) -> None:
    # Given the undo of a refused signup cannot release its email lock (DynamoDB fails once)
    with fails_once("dynamodb", "DeleteItem", "InternalServerError", 500):
        response = sign_up("second@acme.example")

    # Then the caller still hears capacity_exhausted, and the lock holds no key (none was created)
    assert json.loads(response["body"])["error"]["code"] == "capacity_exhausted"
    [lock] = email_locks(stack)
    assert "key_ids" not in lock

    # When the sweep runs after the lease, the lock is gone and nothing else changed
    later = time.time() + load_settings(SignupSettings).signup_lease_seconds + 1
    SignupSweep(ApiGateway(), SignupPartners(stack.physical_ids["PartnersTable"]), clock=lambda: later).run(
        time_left=lambda: 60.0, reserve_seconds=5.0
    )
    assert email_locks(stack) == []
    assert api_key_ids() == [full_account]
