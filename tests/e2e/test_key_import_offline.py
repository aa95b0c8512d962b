"""POST /admin/keys/import over real HTTP on the offline stack, SigV4-signed: the good rows' own key values
work at once on their tiers, the bad rows are reported, and nothing is half-imported (issue 13's acceptance)."""

import csv
import io
import secrets
from http import HTTPStatus

import pytest

from tests.e2e.conftest import RunningStack, http, signed
from tests.e2e.test_admin_console import sign_up

pytestmark = pytest.mark.e2e


def test_an_import_with_good_and_bad_rows(metered_stack: RunningStack) -> None:
    # Given a partner whose email is taken, and a CSV in API Gateway's format plus email and tier
    taken = sign_up(metered_stack)
    free_value, pro_value = "imp" + secrets.token_urlsafe(24), "imp" + secrets.token_urlsafe(24)
    tag = secrets.token_hex(4)
    rows = [
        ["key", "name", "description", "enabled", "usageplanIds", "email", "tier"],
        [free_value, "Imported Free", "", "true", "", f"free-{tag}@import.example", "free"],
        [pro_value, "Imported Pro", "", "true", "", f"pro-{tag}@import.example", "pro"],
        ["imp" + secrets.token_urlsafe(24), "Taken", "", "", "", taken["email"], "free"],
        ["short", "Short", "", "", "", f"short-{tag}@import.example", "free"],
        ["imp" + secrets.token_urlsafe(24), "No Tier", "", "", "", f"tier-{tag}@import.example", "gold"],
    ]
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    keys_before = len(metered_stack.client("apigateway").get_api_keys(limit=500)["items"])

    # When an operator imports it with a signed request
    answer = signed(
        metered_stack,
        "POST",
        "/admin/keys/import",
        raw_body=text.getvalue().encode(),
        headers={"Content-Type": "text/csv"},
    )

    # Then the good rows are imported, the bad ones reported with their reasons
    assert answer.status == HTTPStatus.OK, answer
    assert [(row["row"], row["tier"]) for row in answer.body["imported"]] == [(1, "free"), (2, "pro")]
    assert [(row["row"], row["code"]) for row in answer.body["rejected"]] == [
        (3, "duplicate_email"),
        (4, "invalid_key"),
        (5, "unknown_tier"),
    ]
    assert free_value not in str(answer.body) and pro_value not in str(answer.body)
    # And nothing else was created
    assert len(metered_stack.client("apigateway").get_api_keys(limit=500)["items"]) == keys_before + 2
    # And the imported keys work at once, on their tiers
    for key, tier in ((free_value, "free"), (pro_value, "pro")):
        usage = http("GET", metered_stack.url("/v1/usage"), {"Authorization": f"Bearer {key}"})
        assert usage.status == HTTPStatus.OK, usage
        assert usage.body["tier"] == tier
    # And an unsigned import is refused by the gateway
    unsigned = http("POST", metered_stack.url("/admin/keys/import"), body={"csv": "x"})
    assert unsigned.status == HTTPStatus.FORBIDDEN
