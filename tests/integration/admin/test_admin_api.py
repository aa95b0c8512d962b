"""/admin/* in-process on the emulated stack: partners listed and shown from the table signup wrote, the
refusals (unknown partner, bad query, a call without an IAM principal) in the control plane's shape."""

import os
from http import HTTPStatus

import pytest

from core.adapters.audit_trail import AuditTrail
from core.models import AuditEntry
from tests.integration.admin.conftest import call, sign_up

pytestmark = pytest.mark.usefixtures("admin_env")


def test_partners_are_listed_in_pages_with_their_key_id_and_prefix_only() -> None:
    # Given three partners who signed up
    ids = {sign_up(f"Partner {n}") for n in range(3)}

    # When an operator reads them two at a time
    first = call("GET", "/admin/partners", query={"limit": "2"})
    second = call("GET", "/admin/partners", query={"limit": "2", "next": first.body["next"]})

    # Then every partner comes once, with its key's id and 4-character prefix and never a key value
    assert (first.status, second.status) == (HTTPStatus.OK, HTTPStatus.OK)
    listed = first.body["partners"] + second.body["partners"]
    assert {partner["partner_id"] for partner in listed} == ids and len(listed) == 3
    assert second.body["next"] is None
    for partner in listed:
        assert set(partner) == {
            "partner_id", "name", "email", "tier", "status", "api_key_id", "key_prefix", "created_at",
        }  # fmt: skip
        assert len(partner["key_prefix"]) == 4 and partner["status"] == "ACTIVE" and partner["tier"] == "free"


def test_filters_and_a_bad_query_or_token() -> None:
    sign_up()
    assert call("GET", "/admin/partners", query={"tier": "pro"}).body == {"partners": [], "next": None}
    assert len(call("GET", "/admin/partners", query={"status": "ACTIVE"}).body["partners"]) == 1
    bad = ({"limit": "0"}, {"limit": "x"}, {"tier": "Gold!"}, {"status": "ASLEEP"}, {"next": "forged"}, {"x": "1"})
    for query in bad:
        answer = call("GET", "/admin/partners", query=query)
        assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request"), query


def test_a_partner_is_shown_with_its_audit_trail() -> None:
    # Given a partner with one recorded operator action
    partner_id = sign_up("Shown Ltd")
    AuditTrail(os.environ["PARTNERS_TABLE"]).begin(
        AuditEntry(partner_id=partner_id, seq=0, at="2026-12-05T00:00:00+00:00", actor="arn:x", action="a", reason="r")
    )

    answer = call("GET", f"/admin/partners/{partner_id}")

    assert answer.status == HTTPStatus.OK
    assert answer.body["partner"]["name"] == "Shown Ltd"
    trail = [(entry["seq"], entry["action"], entry["outcome"]) for entry in answer.body["audit"]]
    assert trail == [(1, "a", "started")]


@pytest.mark.parametrize("partner_id", ["p_0123456789abcdef0123456789abcdef", "nobody", "%00"])
def test_an_unknown_partner_is_a_404(partner_id: str) -> None:
    answer = call("GET", f"/admin/partners/{partner_id}")
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "partner_not_found")


def test_a_call_without_an_iam_principal_is_refused() -> None:
    # API Gateway always sets userArn behind AWS_IAM: without one the route is misconfigured, so refuse.
    answer = call("GET", "/admin/partners", user_arn=None)
    assert (answer.status, answer.body["error"]["code"]) == (HTTPStatus.FORBIDDEN, "operator_unknown")
