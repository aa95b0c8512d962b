"""Signup under API Gateway's management-API limits (the fidelity layer enforces them): a time budget below
the function's timeout, cleanup that survives a throttled undo, and the scheduled sweep that finishes it."""

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import boto3
import pytest
from botocore.config import Config

from core.adapters.apigateway import ApiGateway
from core.adapters.partners_table import PartnerRecords
from core.errors import SignupThrottled
from core.models import PartnerStatus
from core.settings import load_settings
from core.signup.adapters.partners import SignupPartners
from core.signup.models import SignedUpPartner, SignupRequest
from core.signup.service import SignupSweep, signup_service
from core.signup.settings import SignupSettings
from handlers import signup, signup_sweep
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from tests.faults import throttled
from tests.lambda_events import LambdaContext, signup_event

pytestmark = pytest.mark.usefixtures("signup_env")


def all_api_keys() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.client("apigateway").get_api_keys(includeValues=False, limit=500)["items"]
    return items


def email_locks(stack: ProvisionedStack) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=stack.physical_ids["PartnersTable"])["Items"]
    return [item for item in items if item["pk"]["S"].startswith("EMAIL#")]


def assert_every_key_belongs_to_one_active_partner(stack: ProvisionedStack) -> None:
    partners = PartnerRecords(stack.physical_ids["PartnersTable"])
    owners = []
    for key in all_api_keys():
        partner = partners.get_by_api_key_id(key["id"])
        assert partner is not None, f"key {key['id']} belongs to no partner"
        assert partner.status == PartnerStatus.ACTIVE
        assert partner.api_key_id == key["id"]
        owners.append(partner.partner_id)
    assert len(owners) == len(set(owners)), "a partner owns two keys"


def sweep_after_the_leases(stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One run of the sweep function, at a time when every lease of the burst has run out."""
    later = time.time() + load_settings(SignupSettings).signup_lease_seconds + 1
    sweep = SignupSweep(ApiGateway(), SignupPartners(stack.physical_ids["PartnersTable"]), clock=lambda: later)
    monkeypatch.setattr(signup_sweep, "signup_sweep", lambda: sweep)
    report: dict[str, Any] = signup_sweep.handler({}, LambdaContext(function_name="SignupSweepFunction"))
    return report


def test_a_throttled_signup_answers_503_with_retry_after_inside_its_budget(stack: ProvisionedStack) -> None:
    # Given API Gateway keeps throttling the plan attachment, and 12 s left in the invocation
    context = LambdaContext(remaining_ms=12_000)
    with throttled("api-gateway", "CreateUsagePlanKey") as refused:
        started = time.monotonic()
        response = signup.handler(signup_event({"name": "Acme", "email": "dev@acme.example"}), context)
        elapsed = time.monotonic() - started

    # Then the caller hears, in time, that it should retry and when, not "internal error"
    assert refused() >= 1
    assert elapsed < 12 - 1
    assert response["statusCode"] == HTTPStatus.SERVICE_UNAVAILABLE
    error = json.loads(response["body"])["error"]
    assert error["code"] == "throttled"
    assert "send the same request again" in error["message"].lower()
    assert int(response["multiValueHeaders"]["Retry-After"][0]) >= 1
    # And the undo left nothing: no key, no lock, so the retry it was told to make can succeed
    assert all_api_keys() == []
    assert email_locks(stack) == []
    status = signup.handler(signup_event({"name": "Acme", "email": "dev@acme.example"}), LambdaContext())
    assert status["statusCode"] == HTTPStatus.CREATED


@pytest.fixture
def spent_management_pool(stack: ProvisionedStack) -> Iterator[None]:
    """The account's management-API pool spent and not refilling: every call answers 429."""
    apigateway_fidelity.set_management_rate_limits(True, clock=lambda: 0.0)  # full buckets, frozen in time
    once = boto3.client("apigateway", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    with contextlib.suppress(once.exceptions.TooManyRequestsException):
        for _ in range(100):
            once.get_usage_plans(limit=1)
    yield
    apigateway_fidelity.set_management_rate_limits(True, clock=time.monotonic)


@pytest.mark.usefixtures("spent_management_pool")
def test_botocore_retries_stop_at_the_deadline_instead_of_overrunning_the_timeout(stack: ProvisionedStack) -> None:
    # Given every management call answers 429, so botocore would back off (up to 1, 2, then 4 s) and retry
    attempts = []

    def count(**_: Any) -> None:
        attempts.append(1)

    events = boto3._get_default_session().events
    events.register("before-send.api-gateway", count)
    try:
        service = signup_service()  # its client copies the counter
    finally:
        events.unregister("before-send.api-gateway", count)

    # When a signup runs with 10.5 s left: its own calls must end 6 s before that (the undo's reserve and the
    # answer's margin), and one attempt may take 4 s (the client's timeouts)
    started = time.monotonic()
    with pytest.raises(SignupThrottled) as refused:
        service.sign_up(SignupRequest(name="Acme", email="dev@acme.example"), remaining_ms=10_500)
    elapsed = time.monotonic() - started

    # Then the first attempt is made, but no retry whose backoff and attempt could not end in time
    assert len(attempts) == 1
    assert elapsed < 10.5 - 6
    assert refused.value.retry_after_seconds >= 1


def test_after_a_throttled_burst_and_one_sweep_every_key_belongs_to_one_active_partner(
    stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given real management-API limits, every undo's DeleteApiKey throttled and one enable in three throttled
    # (after botocore's retries), so some signups fail and cannot clean up after themselves
    requests = [SignupRequest(name=f"Partner {n}", email=f"partner{n}@example.com") for n in range(24)]
    answers: list[SignedUpPartner | SignupThrottled] = []

    def sign_up(request: SignupRequest) -> SignedUpPartner | SignupThrottled:
        try:
            return signup_service().sign_up(request, remaining_ms=20_000)
        except SignupThrottled as exc:  # every other outcome fails the test
            return exc

    with (
        throttled("api-gateway", "DeleteApiKey") as deletes_refused,
        throttled("api-gateway", "UpdateApiKey", every=3),
    ):
        signup_service()  # its client is created with the faults in place
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(sign_up, requests))

    issued = [answer for answer in answers if isinstance(answer, SignedUpPartner)]
    refused = [answer for answer in answers if isinstance(answer, SignupThrottled)]
    assert issued and refused and deletes_refused() > 0
    # The failed ones left keys behind, each noted on its still-pending lock
    locks = email_locks(stack)
    pending = [lock for lock in locks if lock["status"]["S"] == "PENDING"]
    assert pending and all(lock["key_ids"]["SS"] for lock in pending)
    assert len(all_api_keys()) == len(issued) + sum(len(lock["key_ids"]["SS"]) for lock in pending)
    # Each refused caller is told to come back once its lock's lease has run out
    assert all(exc.retry_after_seconds >= 1 for exc in refused)

    # When the sweep runs once, after the leases
    report = sweep_after_the_leases(stack, monkeypatch)

    # Then every key in the account belongs to exactly one active partner, and no pending lock is left
    assert report["cleaned"] == len(pending)
    assert_every_key_belongs_to_one_active_partner(stack)
    assert {key["id"] for key in all_api_keys()} == {answer.api_key_id for answer in issued}
    assert all(lock["status"]["S"] == "ACTIVE" for lock in email_locks(stack))
    # And the refused partners can sign up now
    retried = signup_service().sign_up(requests[answers.index(refused[0])])
    assert retried.partner_id


def test_the_sweep_leaves_locks_whose_lease_still_runs(stack: ProvisionedStack) -> None:
    # Given a signup in flight (its lock pending, its lease running) with a key noted on it
    partners = SignupPartners(stack.physical_ids["PartnersTable"])
    reservation = partners.reserve_email("dev@acme.example", "p_inflight", time.time(), 60)
    key_id = boto3.client("apigateway").create_api_key(name="in-flight", enabled=False)["id"]
    partners.record_key("dev@acme.example", reservation, key_id)

    # When the sweep runs now
    report = SignupSweep(ApiGateway(), partners).run(time_left=lambda: 100.0, reserve_seconds=1)

    # Then it touches nothing of it
    assert report.found == 0
    assert [key["id"] for key in all_api_keys()] == [key_id]
    assert len(email_locks(stack)) == 1


def test_a_lock_taken_over_during_the_sweep_is_not_dropped(stack: ProvisionedStack) -> None:
    # Given an expired lock that a retry takes over just after the sweep read it
    partners = SignupPartners(stack.physical_ids["PartnersTable"])
    partners.reserve_email("dev@acme.example", "p_dead", 0, 60)
    [lock] = partners.expired_locks(time.time())
    partners.reserve_email("dev@acme.example", "p_new", time.time(), 60)

    # When the sweep finishes that lock
    dropped = partners.drop_expired_lock(lock)

    # Then the retry keeps its lock
    assert dropped is False
    assert len(email_locks(stack)) == 1
