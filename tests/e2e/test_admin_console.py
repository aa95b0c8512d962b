"""The operator console over real HTTP on the offline stack, with requests SigV4-signed by botocore: the
gateway verifies signatures as API Gateway does for AWS_IAM routes, and the function sees the caller."""

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
