"""The operator console over real HTTP on the offline stack, with requests SigV4-signed by botocore: the
gateway verifies signatures as API Gateway does for AWS_IAM routes, and the function sees the caller."""

import time
import uuid
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import RunningStack, http, signed

pytestmark = pytest.mark.e2e


def sign_up(stack: RunningStack, tier: str | None = None) -> dict[str, Any]:
    body = {
        "name": "Grace Hopper",
        "email": f"grace-{uuid.uuid4().hex[:8]}@example.com",
        **({"tier": tier} if tier else {}),
    }
    answer = http("POST", stack.url("/signup"), body=body)
    for _ in range(10):  # signup's stage throttle (SignupRateLimit) refuses bursts: wait as a client would
        if answer.status != HTTPStatus.TOO_MANY_REQUESTS:
            break
        time.sleep(1)
        answer = http("POST", stack.url("/signup"), body=body)
    assert answer.status == HTTPStatus.CREATED, answer
    return {"email": body["email"], **answer.body}


def test_a_signed_operator_lists_and_shows_partners(metered_stack: RunningStack) -> None:
    # Given a partner that signed up over HTTP
    partner = sign_up(metered_stack)

    # When an operator lists partners by its email, and shows it, with signed requests
    listed = signed(metered_stack, "GET", "/admin/partners", query={"email": partner["email"]})
    shown = signed(metered_stack, "GET", f"/admin/partners/{partner['partner_id']}")

    # Then both answer, with the key's id and prefix, never its value
    assert listed.status == HTTPStatus.OK, listed
    assert [found["partner_id"] for found in listed.body["partners"]] == [partner["partner_id"]]
    assert shown.status == HTTPStatus.OK, shown
    assert shown.body["partner"]["api_key_id"] == partner["api_key_id"]
    assert shown.body["partner"]["key_prefix"] == partner["api_key"][:4]
    assert partner["api_key"] not in str(listed.body) + str(shown.body)


def test_every_listed_partner_comes_once_across_pages(metered_stack: RunningStack) -> None:
    for _ in range(3):
        sign_up(metered_stack)
    seen: list[str] = []
    token = None
    while True:
        page = signed(
            metered_stack, "GET", "/admin/partners", query={"limit": "2", **({"next": token} if token else {})}
        )
        assert page.status == HTTPStatus.OK, page
        seen += [partner["partner_id"] for partner in page.body["partners"]]
        token = page.body["next"]
        if token is None:
            break
    assert len(seen) == len(set(seen)) >= 3


def test_an_unsigned_call_gets_api_gateways_missing_authentication_token(metered_stack: RunningStack) -> None:
    for path in ("/admin/partners", "/admin/partners/p_1"):
        answer = http("GET", metered_stack.url(path))
        assert (answer.status, answer.body) == (HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"})
        assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    # An API key is no substitute for a signature
    key = sign_up(metered_stack)["api_key"]
    answer = http("GET", metered_stack.url("/admin/partners"), headers={"Authorization": f"Bearer {key}"})
    assert (answer.status, answer.headers["x-amzn-ErrorType"]) == (HTTPStatus.FORBIDDEN, "IncompleteSignatureException")


def test_a_wrong_secret_or_an_unknown_key_is_refused(metered_stack: RunningStack) -> None:
    accepted = metered_stack.info["aws_credentials"]
    wrong_secret = signed(
        metered_stack, "GET", "/admin/partners", credentials={**accepted, "secret_access_key": "x" * 40}
    )
    unknown_key = signed(
        metered_stack,
        "GET",
        "/admin/partners",
        credentials={"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x" * 40},
    )

    assert wrong_secret.status == HTTPStatus.FORBIDDEN
    assert wrong_secret.body["message"].startswith("The request signature we calculated does not match")
    assert wrong_secret.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert (unknown_key.status, unknown_key.body) == (
        HTTPStatus.FORBIDDEN,
        {"message": "The security token included in the request is invalid."},
    )


def test_unknown_partner_and_bad_queries_are_4xx(metered_stack: RunningStack) -> None:
    unknown = signed(metered_stack, "GET", "/admin/partners/p_0123456789abcdef0123456789abcdef")
    assert (unknown.status, unknown.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")
    for query in ({"limit": "1000"}, {"next": "not-a-token"}, {"tier": "\u202e"}, {"email": "x" * 300}):
        answer = signed(metered_stack, "GET", "/admin/partners", query=query)
        assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), query


def models(stack: RunningStack, api_key: str) -> int:
    return http("GET", stack.url("/v1/models"), headers={"x-api-key": api_key}).status


def test_suspend_resume_and_revoke_over_http(metered_stack: RunningStack) -> None:
    partner = sign_up(metered_stack, "pro")  # free is throttled to 1/s on this stack
    path = f"/admin/partners/{partner['partner_id']}"
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK

    # Suspended: API Gateway refuses the key at once
    suspended = signed(metered_stack, "POST", f"{path}/suspend", {"reason": "abuse report"})
    assert (suspended.status, suspended.body["partner"]["status"]) == (HTTPStatus.OK, "SUSPENDED"), suspended
    assert suspended.body["audit"]["actor"] == "arn:aws:iam::123456789012:user/offline-operator"
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.FORBIDDEN

    # Resumed: the key works again
    resumed = signed(metered_stack, "POST", f"{path}/resume", {"reason": "resolved"})
    assert (resumed.status, resumed.body["partner"]["status"]) == (HTTPStatus.OK, "ACTIVE"), resumed
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK

    # Revoked: the key is gone for good, the partner stays
    revoked = signed(metered_stack, "DELETE", f"{path}/key", {"reason": "key leaked"})
    assert (revoked.status, revoked.body["partner"]["status"]) == (HTTPStatus.OK, "REVOKED"), revoked
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.FORBIDDEN
    shown = signed(metered_stack, "GET", path)
    assert [entry["action"] for entry in shown.body["audit"]] == ["revoke", "resume", "suspend"]


def test_changes_refuse_unsigned_calls_and_hostile_bodies(metered_stack: RunningStack) -> None:
    partner = sign_up(metered_stack, "pro")
    path = f"/admin/partners/{partner['partner_id']}/suspend"

    unsigned = http("POST", metered_stack.url(path), body={"reason": "x"})
    assert (unsigned.status, unsigned.body) == (HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"})
    for raw in (b"", b"not json", b'{"reason": ""}', b"\xff\xfe bad utf-8", b'{"reason": "' + b"x" * 20_000 + b'"}'):
        answer = signed(metered_stack, "POST", path, raw_body=raw)
        assert answer.status in (HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE), (raw[:20], answer)
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK
    unknown = signed(
        metered_stack, "POST", "/admin/partners/p_0123456789abcdef0123456789abcdef/suspend", {"reason": "x"}
    )
    assert (unknown.status, unknown.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")


def test_an_operators_tier_change_over_http(metered_stack: RunningStack) -> None:
    partner = sign_up(metered_stack, "pro")
    path = f"/admin/partners/{partner['partner_id']}/tier"

    changed = signed(metered_stack, "POST", path, {"tier": "enterprise", "reason": "contract #42"})

    # Then the partner is on enterprise, its key still works there, and the change is audited
    assert changed.status == HTTPStatus.OK, changed
    assert (changed.body["partner"]["tier"], changed.body["partner"]["status"]) == ("enterprise", "ACTIVE")
    assert (changed.body["audit"]["action"], changed.body["audit"]["details"]["previous_tier"]) == ("tier", "pro")
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK
    # And a tier the stack does not have is a 400, an unknown partner a 404, unsigned a 403
    unknown_tier = signed(metered_stack, "POST", path, {"tier": "platinum", "reason": "x"})
    assert (unknown_tier.status, unknown_tier.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "unknown_tier")
    nobody = signed(
        metered_stack, "POST", "/admin/partners/p_0123456789abcdef0123456789abcdef/tier", {"tier": "pro", "reason": "x"}
    )
    assert (nobody.status, nobody.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")
    unsigned = http("POST", metered_stack.url(path), body={"tier": "free", "reason": "x"})
    assert unsigned.status == HTTPStatus.FORBIDDEN
