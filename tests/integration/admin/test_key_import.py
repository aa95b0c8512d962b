"""POST /admin/keys/import on the emulated stack: each good row becomes a partner on its tier's plan with its
own key value; bad rows are reported with their reason and change nothing; no key value is ever answered or
logged; a failing AWS call undoes its row only."""

import csv
import io
import json
import os
import secrets
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.admin.service import admin_service, key_importer
from core.signup.models import SignupRequest
from core.signup.service import signup_service
from handlers import admin
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from tests.faults import LambdaTimedOut, dies_before, fails_once
from tests.lambda_events import LambdaContext, admin_event

pytestmark = pytest.mark.usefixtures("admin_env", "fresh_importer")

HEADER = ["key", "name", "description", "enabled", "usageplanIds", "email", "tier"]


@pytest.fixture
def fresh_importer() -> Iterator[None]:
    key_importer.cache_clear()
    yield
    key_importer.cache_clear()


def value() -> str:
    return "imp" + secrets.token_urlsafe(24)


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def post(body: str | bytes, query: dict[str, str] | None = None) -> tuple[int, Any]:
    response = admin.handler(admin_event("POST", "/admin/keys/import", body, query), LambdaContext("AdminFunction"))
    return response["statusCode"], json.loads(response["body"])


def key_count() -> int:
    return len(boto3.client("apigateway").get_api_keys(limit=500)["items"])


def plan_keys(stack: ProvisionedStack, tier: str) -> set[str]:
    found = boto3.client("apigateway").get_usage_plan_keys(usagePlanId=stack.plan_ids_by_tier[tier], limit=500)
    return {item["id"] for item in found["items"]}


def mailbox_item(email: str) -> dict[str, Any] | None:
    table = os.environ["PARTNERS_TABLE"]
    item: dict[str, Any] | None = (
        boto3.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"EMAIL#{email}"}}).get("Item")
    )
    return item


def test_good_rows_become_partners_on_their_tiers_and_bad_rows_are_reported_and_change_nothing(
    stack: ProvisionedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a partner who signed up (its email and key value are taken)
    taken = signup_service().sign_up(SignupRequest(name="Taken Ltd", email="taken@acme.example"))
    free_value, pro_value = value(), value()
    rows = [
        [free_value, "Good Free", "from the old system", "true", "", "good-free@acme.example", "free"],
        [pro_value, "=Good Pro", "", "", stack.plan_ids_by_tier["pro"], "Good-Pro@Acme.example", "pro"],
        [value(), "Bad Email", "", "", "", "not-an-email", "free"],
        [value(), "Bad Tier", "", "", "", "bad-tier@acme.example", "platinum"],
        [value(), "Twice", "", "", "", "good-free@acme.example", "free"],
        [value(), "Registered", "", "", "", "taken@acme.example", "free"],
        ["tooshort", "Short Key", "", "", "", "short@acme.example", "free"],
        [taken.api_key.get_secret_value(), "Key In Use", "", "", "", "in-use@acme.example", "free"],
        [free_value, "Same Value", "", "", "", "same-value@acme.example", "free"],
        [value(), "Control\x1b[31m", "", "", "", "control@acme.example", "free"],
        [value(), "Other Plan", "", "", stack.plan_ids_by_tier["pro"], "other-plan@acme.example", "free"],
        [value(), "Disabled", "", "false", "", "disabled@acme.example", "free"],
        ["only", "three", "cells"],
    ]
    keys_before = key_count()

    # When an operator imports the file
    status, body = post(csv_text(rows))

    # Then the two good rows are partners, each with its own key id, on its tier's plan
    assert status == HTTPStatus.OK, body
    imported = {row["row"]: row for row in body["imported"]}
    assert sorted(imported) == [1, 2]
    assert (imported[1]["tier"], imported[2]["tier"], imported[2]["email"]) == ("free", "pro", "good-pro@acme.example")
    assert imported[1]["key_prefix"] == free_value[:4]
    assert imported[1]["api_key_id"] in plan_keys(stack, "free")
    assert imported[2]["api_key_id"] in plan_keys(stack, "pro")
    for row in imported.values():
        partner = admin_service().partner(row["partner_id"])
        assert (partner.status.value, partner.api_key_id, partner.tier) == ("ACTIVE", row["api_key_id"], row["tier"])
        key = boto3.client("apigateway").get_api_key(apiKey=row["api_key_id"], includeValue=True)
        assert key["enabled"] is True
        assert key["value"] == (free_value if row["row"] == 1 else pro_value)
        assert key["tags"]["metered-ai:partner-id"] == row["partner_id"]
    assert admin_service().partner(imported[2]["partner_id"]).name == "=Good Pro"  # text, stored as given
    # And every bad row is reported with its reason, and left nothing behind
    rejected = {row["row"]: row["code"] for row in body["rejected"]}
    assert rejected == {
        3: "invalid_email",
        4: "unknown_tier",
        5: "duplicate_email",
        6: "duplicate_email",
        7: "invalid_key",
        8: "key_in_use",
        9: "key_in_use",
        10: "invalid_row",
        11: "invalid_row",
        12: "invalid_row",
        13: "invalid_row",
    }
    assert all(row["reason"] for row in body["rejected"])
    assert key_count() == keys_before + 2
    for email in ("bad-tier@acme.example", "short@acme.example", "in-use@acme.example", "same-value@acme.example"):
        assert mailbox_item(email) is None
    # And no key value is in the answer or in any log line
    printed = capsys.readouterr()
    for secret in (free_value, pro_value, taken.api_key.get_secret_value()):
        assert secret not in json.dumps(body)
        assert secret not in printed.out + printed.err


def test_an_imported_partner_has_an_audit_entry(stack: ProvisionedStack) -> None:
    status, body = post(
        csv_text([[value(), "Audited", "", "", "", "audited@acme.example", "free"]]), {"reason": "migration"}
    )

    assert status == HTTPStatus.OK, body
    [row] = body["imported"]
    shown = admin_service().show_partner(row["partner_id"])
    assert [(entry.action, entry.reason, entry.outcome) for entry in shown.audit] == [
        ("import", "migration", "applied")
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xff\xfekey,name,email,tier\n", HTTPStatus.BAD_REQUEST),  # not UTF-8
        ("name,email,tier\nA,a@acme.example,free\n", HTTPStatus.BAD_REQUEST),  # no key column
        ("key,name,email,tier\n", HTTPStatus.BAD_REQUEST),  # no rows
        ('key,name,email,tier\n"unterminated,A,a@acme.example,free\n', HTTPStatus.BAD_REQUEST),
        ("key,name,email,tier\n" + "x" * (1024 * 1024), HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
        ("key,name,email,tier\n" + "k,n,e,t\n" * 501, HTTPStatus.BAD_REQUEST),
    ],
)
def test_a_body_that_is_not_a_bounded_utf8_csv_with_the_columns_is_refused_whole(
    body: str | bytes, status: HTTPStatus
) -> None:
    keys_before = key_count()

    answered, error = post(body)

    assert answered == status, error
    assert key_count() == keys_before


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("api-gateway", "CreateApiKey"),
        ("api-gateway", "CreateUsagePlanKey"),
        ("api-gateway", "UpdateApiKey"),
        ("dynamodb", "TransactWriteItems"),
    ],
)
def test_an_aws_call_failing_once_undoes_its_row_only_and_the_row_imports_on_the_next_call(
    stack: ProvisionedStack, service: str, operation: str
) -> None:
    first, second = value(), value()
    rows = [
        [first, "First", "", "", "", f"first-{operation.lower()}@acme.example", "free"],
        [second, "Second", "", "", "", f"second-{operation.lower()}@acme.example", "free"],
    ]
    keys_before = key_count()

    key_importer.cache_clear()
    with fails_once(service, operation, "ValidationException"):
        status, body = post(csv_text(rows))

    # The first row failed and left nothing; the second went in
    assert status == HTTPStatus.OK, body
    assert [(row["row"], row["code"]) for row in body["rejected"]] == [(1, "failed")]
    assert [row["row"] for row in body["imported"]] == [2]
    assert key_count() == keys_before + 1
    assert mailbox_item(f"first-{operation.lower()}@acme.example") is None
    # And importing the first row again works
    status, body = post(csv_text(rows[:1]))
    assert [row["row"] for row in body["imported"]] == [1], body


def test_at_the_key_ceiling_the_import_is_503_capacity_exhausted_and_creates_nothing() -> None:
    apigateway_fidelity.set_api_key_limit(key_count())
    try:
        status, body = post(csv_text([[value(), "Full", "", "", "", "full@acme.example", "free"]]))
    finally:
        apigateway_fidelity.set_api_key_limit(None)

    assert (status, body["error"]["code"]) == (HTTPStatus.SERVICE_UNAVAILABLE, "capacity_exhausted")
    assert mailbox_item("full@acme.example") is None


def test_an_import_killed_mid_way_leaves_its_key_on_the_lock_and_the_next_import_cleans_it_up(
    stack: ProvisionedStack,
) -> None:
    email = "killed@acme.example"
    keys_before = key_count()
    # Given an import killed by a timeout after its key was created, before it reached its plan
    with dies_before("api-gateway", "CreateUsagePlanKey"), pytest.raises(LambdaTimedOut):
        post(csv_text([[value(), "Killed", "", "", "", email, "free"]]))
    lock = mailbox_item(email)
    assert lock is not None and len(lock["key_ids"]["SS"]) == 1  # the key is named on the lock: never orphaned
    [dead] = lock["key_ids"]["SS"]

    # When its lease has run out and the row is imported again
    boto3.client("dynamodb").update_item(
        TableName=os.environ["PARTNERS_TABLE"],
        Key={"pk": {"S": f"EMAIL#{email}"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "0"}},
    )
    status, body = post(csv_text([[value(), "Killed", "", "", "", email, "free"]]))

    # Then the dead attempt's key is gone and the partner is imported once
    assert status == HTTPStatus.OK, body
    assert [row["row"] for row in body["imported"]] == [1]
    with pytest.raises(boto3.client("apigateway").exceptions.NotFoundException):
        boto3.client("apigateway").get_api_key(apiKey=dead)
    assert key_count() == keys_before + 1
