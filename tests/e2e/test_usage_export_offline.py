"""The usage export over real HTTP on the offline stack, SigV4-signed: its requests match GetUsage and its
tokens match the AI API's ledger for the calls made (issue 13's acceptance)."""

import csv
import io
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pytest

from core.adapters.metering_items import key_pk, ledger_sk, tokens_by_model
from core.periods import period_bounds
from tests.e2e.conftest import RunningStack, http, signed
from tests.e2e.test_admin_console import sign_up

pytestmark = pytest.mark.e2e


def chat(stack: RunningStack, api_key: str, words: int) -> None:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": " ".join(["word"] * words)}]}
    answer = http("POST", stack.url("/v1/chat/completions"), {"Authorization": f"Bearer {api_key}"}, body)
    assert answer.status == HTTPStatus.OK, answer


def get_usage(stack: RunningStack, key_id: str) -> int:
    today = datetime.now(UTC).date().isoformat()
    found = stack.client("apigateway").get_usage(
        usagePlanId=stack.info["usage_plan_ids"]["pro"], keyId=key_id, startDate=today, endDate=today
    )
    return sum(day[0] for day in found["items"].get(key_id, []))


def ledger_tokens(stack: RunningStack, key_id: str) -> dict[str, Any]:
    start, _ = period_bounds("DAY", datetime.now(UTC))
    item = stack.client("dynamodb").get_item(
        TableName=stack.info["tables"]["MeteringTable"],
        Key={"pk": {"S": key_pk(key_id)}, "sk": {"S": ledger_sk(start)}},
    )["Item"]
    numbers = {name: int(value["N"]) for name, value in item.items() if "N" in value}
    return {
        "prompt_tokens": numbers["prompt_tokens"],
        "completion_tokens": numbers["completion_tokens"],
        "tokens_by_model": tokens_by_model(numbers),
    }


def test_the_exports_requests_match_getusage_and_its_tokens_the_ledger(metered_stack: RunningStack) -> None:
    # Given a pro partner (DAY quota of 5 here) that made three chat completions over HTTP
    partner = sign_up(metered_stack, "pro")
    for words in (2, 3, 4):
        chat(metered_stack, partner["api_key"], words)
    today = datetime.now(UTC).date().isoformat()

    # When an operator exports today's usage, as JSON and as CSV, with signed requests
    as_json = signed(metered_stack, "GET", "/admin/usage", query={"period": today, "format": "json"})
    as_csv = signed(metered_stack, "GET", "/admin/usage", query={"period": today, "format": "csv"})

    # Then the partner's row has GetUsage's requests and the ledger's tokens, by model
    assert as_json.status == HTTPStatus.OK, as_json
    [row] = [row for row in as_json.body["rows"] if row["partner_id"] == partner["partner_id"]]
    assert row["requests"] == get_usage(metered_stack, partner["api_key_id"]) == 3
    tokens = ledger_tokens(metered_stack, partner["api_key_id"])
    assert {name: row[name] for name in tokens} == tokens
    assert tokens["tokens_by_model"]["nova-micro"]["prompt_tokens"] == 9
    # And the CSV says the same, with no key value anywhere
    assert as_csv.status == HTTPStatus.OK, as_csv
    assert as_csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    [line] = [line for line in csv.DictReader(io.StringIO(as_csv.body)) if line["partner_id"] == partner["partner_id"]]
    assert (line["requests"], line["prompt_tokens@nova-micro"]) == ("3", "9")
    assert partner["api_key"] not in as_csv.body + str(as_json.body)


def test_an_unsigned_export_is_refused_and_a_bad_period_is_400(metered_stack: RunningStack) -> None:
    unsigned = http("GET", metered_stack.url("/admin/usage?period=2026-03"))
    bad = signed(metered_stack, "GET", "/admin/usage", query={"period": "2026-3"})

    assert (unsigned.status, unsigned.body) == (HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"})
    assert (bad.status, bad.body["error"]["code"]) == (HTTPStatus.BAD_REQUEST, "invalid_request")
