"""GET /admin/usage on the emulated stack: requests as GetUsage counts them over each tier's plan, extensions and
tokens by model from the AI API's ledger, one row per partner and period, as JSON or formula-safe CSV."""

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import boto3
import pytest

from core.adapters.metering_items import key_pk, ledger_sk
from core.admin.service import admin_service, usage_exporter
from core.ai.adapters.metering_table import MeteringTable
from core.ai.ledger import LedgerEntry, TokenHold
from core.periods import period_bounds, period_key
from core.settings import forget_settings
from core.signup.service import signup_service
from handlers import admin
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from tests.faults import fails_once
from tests.integration.admin.conftest import sign_up
from tests.lambda_events import LambdaContext, admin_event

pytestmark = pytest.mark.usefixtures("admin_env", "pro_at_signup")


@pytest.fixture
def pro_at_signup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pro partners without billing: signup may choose `pro` (a MONTH tier) here."""
    monkeypatch.setenv("SELF_SERVICE_TIERS", "free,pro")
    forget_settings()
    signup_service.cache_clear()
    yield
    signup_service.cache_clear()


def export(query: dict[str, str] | None) -> tuple[int, str, dict[str, str]]:
    response = admin.handler(admin_event("GET", "/admin/usage", None, query), LambdaContext("AdminFunction"))
    headers = {name: values[0] for name, values in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], response["body"], headers


def spend(
    stack: ProvisionedStack, key_id: str, partner_id: str, tier: str, *, model: str, tokens: tuple[int, int]
) -> None:
    """One call settled on the key's ledger item, as the AI API makes it: (prompt, completion) tokens."""
    prompt, done = tokens
    now = datetime.now(UTC)
    start, reset = period_bounds("DAY" if tier == "free" else "MONTH", now)
    entry = LedgerEntry(key_id, start, reset, tier, partner_id)
    table = MeteringTable(stack.physical_ids["MeteringTable"])
    hold = TokenHold(uuid.uuid4().hex, prompt + done + 10, int(now.timestamp()) + 60, model=model)
    assert table.reserve(entry, hold, None, now.timestamp())[0]
    table.settle(entry, hold, prompt, done)


def add_to_ledger(stack: ProvisionedStack, key_id: str, **numbers: int) -> None:
    """Attributes other writers put on the ledger item (extensions; a rotated key's carried tokens)."""
    start, _ = period_bounds("DAY", datetime.now(UTC))
    boto3.client("dynamodb").update_item(
        TableName=stack.physical_ids["MeteringTable"],
        Key={"pk": {"S": key_pk(key_id)}, "sk": {"S": ledger_sk(start)}},
        UpdateExpression="ADD " + ", ".join(f"{name} :{name}" for name in numbers),
        ExpressionAttributeValues={f":{name}": {"N": str(value)} for name, value in numbers.items()},
    )


def old_key_in_plan(stack: ProvisionedStack, tier: str) -> str:
    client = boto3.client("apigateway")
    key_id = client.create_api_key(name=f"old-{uuid.uuid4().hex[:8]}", enabled=True)["id"]
    client.create_usage_plan_key(usagePlanId=stack.plan_ids_by_tier[tier], keyId=key_id, keyType="API_KEY")
    return key_id


def gateway_requests(stack: ProvisionedStack, tier: str, key_id: str, n: int) -> None:
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier[tier], key_id, datetime.now(UTC).date(), n)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_days_export_has_a_row_per_partner_with_requests_extensions_and_tokens_by_model(
    stack: ProvisionedStack,
) -> None:
    # Given two free partners (DAY quota) and a pro one (MONTH)
    busy = admin_service().partner(sign_up("Busy Ltd", "free"))
    idle = admin_service().partner(sign_up("Idle Ltd", "free"))
    monthly = admin_service().partner(sign_up("Monthly Ltd", "pro"))
    # The busy one made 3 requests with its key and 2 with the key it had before a rotation today (still in
    # its grace: in the plan; the partner record names the new key only)
    old_key = old_key_in_plan(stack, "free")
    gateway_requests(stack, "free", busy.api_key_id, 3)
    gateway_requests(stack, "free", old_key, 2)
    spend(stack, busy.api_key_id, busy.partner_id, "free", model="nova-micro", tokens=(4, 4))
    spend(stack, busy.api_key_id, busy.partner_id, "free", model="amazon.titan-embed-text-v2:0", tokens=(5, 0))
    spend(stack, old_key, busy.partner_id, "free", model="nova-micro", tokens=(1, 1))
    # ... an operator extended it, and rotation carried the old key's tokens onto the new key's item
    add_to_ledger(stack, busy.api_key_id, extension_requests=10, extension_tokens=500, carried_tokens=2)
    gateway_requests(stack, "pro", monthly.api_key_id, 7)

    # When an operator exports today
    status, body, headers = export({"period": today()})

    # Then each free partner has one row for today's DAY period; the pro one is in the month's export only
    assert status == HTTPStatus.OK, body
    assert headers["Content-Type"].startswith("application/json")
    report = json.loads(body)
    rows = {row["partner_id"]: row for row in report["rows"]}
    assert busy.partner_id in rows and idle.partner_id in rows and monthly.partner_id not in rows
    start, reset = period_bounds("DAY", datetime.now(UTC))
    assert rows[busy.partner_id] == {
        "partner_id": busy.partner_id,
        "name": "Busy Ltd",
        "email": busy.email,
        "tier": "free",
        "quota_period": "DAY",
        "period_start": period_key(start),
        "period_end": period_key(reset),
        "requests": 5,
        "extension_requests": 10,
        "extension_tokens": 500,
        # both keys' own counters; the carried 2 tokens are not counted twice
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "tokens_by_model": {
            "amazon.titan-embed-text-v2:0": {"prompt_tokens": 5, "completion_tokens": 0},
            "nova-micro": {"prompt_tokens": 5, "completion_tokens": 5},
        },
    }
    assert (rows[idle.partner_id]["requests"], rows[idle.partner_id]["tokens_by_model"]) == (0, {})

    # And the month's export has the pro partner's requests
    status, body, _ = export({"period": today()[:7], "format": "json"})
    month = {row["partner_id"]: row for row in json.loads(body)["rows"]}
    assert status == HTTPStatus.OK
    assert month[monthly.partner_id]["requests"] == 7 and busy.partner_id not in month


def test_the_csv_export_is_formula_safe_utf8_with_two_columns_per_model(stack: ProvisionedStack) -> None:
    # Given partners whose names a spreadsheet would run as formulas, and one with non-ASCII letters
    hostile = admin_service().partner(sign_up('=HYPERLINK("http://evil.example","x")', "free"))
    plus = admin_service().partner(sign_up("+1 Partners", "free"))
    accents = admin_service().partner(sign_up("Ünïcode Gmbh", "free"))
    spend(stack, hostile.api_key_id, hostile.partner_id, "free", model="nova-micro", tokens=(3, 2))

    # When exported as CSV
    status, body, headers = export({"period": today(), "format": "csv"})

    # Then it is a CSV attachment whose cells are text, never formulas
    assert status == HTTPStatus.OK, body
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="usage-{today()}.csv"'
    table = list(csv.DictReader(io.StringIO(body)))
    by_id = {row["partner_id"]: row for row in table}
    assert by_id[hostile.partner_id]["name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert by_id[plus.partner_id]["name"] == "'+1 Partners"
    assert by_id[accents.partner_id]["name"] == "Ünïcode Gmbh"
    assert by_id[hostile.partner_id]["prompt_tokens@nova-micro"] == "3"
    assert by_id[hostile.partner_id]["completion_tokens@nova-micro"] == "2"
    assert by_id[plus.partner_id]["prompt_tokens@nova-micro"] == "0"
    assert body.splitlines()[0].startswith('"partner_id","name","email","tier","quota_period"')


@pytest.mark.parametrize(
    "query",
    [
        None,
        {"period": "2026-13"},
        {"period": "2026-02-30"},
        {"period": "march"},
        {"period": "2026-03", "format": "xlsx"},
        {"period": "2026-03", "unknown": "1"},
        {"period": "2999-01"},
    ],
)
def test_a_bad_period_or_format_is_400(query: dict[str, str] | None) -> None:
    status, body, _ = export(query)

    assert status == HTTPStatus.BAD_REQUEST, body
    assert json.loads(body)["error"]["code"] == "invalid_request"


def test_a_week_tier_is_exported_by_the_monday_its_week_starts() -> None:
    from core.admin.usage_export import parse_period

    monday = parse_period("2026-03-02")
    tuesday = parse_period("2026-03-03")

    assert monday.kinds == ("DAY", "WEEK") and tuesday.kinds == ("DAY",)
    assert monday.bounds("WEEK")[1] - monday.bounds("WEEK")[0] == timedelta(weeks=1)


def test_an_export_too_large_for_an_answer_is_413_naming_the_s3_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.admin import usage_export

    sign_up("Any Ltd", "free")
    monkeypatch.setattr(usage_export, "MAX_ANSWER_BYTES", 10)

    status, body, _ = export({"period": today(), "format": "csv"})

    assert status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["code"] == "export_too_large"
    assert "scheduled" in error["message"]


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("api-gateway", "GetUsagePlans"),
        ("api-gateway", "GetUsage"),
        ("dynamodb", "Scan"),
    ],
)
def test_each_aws_call_failing_once_fails_the_whole_export_never_part_of_it_and_the_retry_answers(
    stack: ProvisionedStack, service: str, operation: str
) -> None:
    # Given a partner with usage, and the export as it is
    partner = admin_service().partner(sign_up("Steady Ltd", "free"))
    gateway_requests(stack, "free", partner.api_key_id, 2)
    spend(stack, partner.api_key_id, partner.partner_id, "free", model="nova-micro", tokens=(2, 1))
    expected = export({"period": today()})
    assert expected[0] == HTTPStatus.OK

    # When it fails once with an error botocore does not retry
    usage_exporter.cache_clear()
    with fails_once(service, operation, "ValidationException"):
        failed = export({"period": today()})
    # Then the operator gets an error, never a partial export, and the next call answers in full
    assert failed[0] >= HTTPStatus.INTERNAL_SERVER_ERROR
    assert json.loads(failed[1])["error"]["code"] in {"internal_error", "throttled"}
    assert export({"period": today()})[:2] == expected[:2]
