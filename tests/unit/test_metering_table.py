"""The ledger's DynamoDB requests, pinned with Stubber against botocore's service model: one conditional
UpdateItem admits a reservation, a refused one is still counted, and settle/release adjust the same item."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core.adapters.metering_table import MeteringTable
from core.ledger import LedgerEntry, LedgerReading

TABLE = "metering"
ENTRY = LedgerEntry(
    api_key_id="k1",
    period_start=datetime(2026, 3, 1, tzinfo=UTC),
    period_reset=datetime(2026, 4, 1, tzinfo=UTC),
    tier="pro",
    partner_id="p_1",
)
KEY = {"pk": {"S": "KEY#k1"}, "sk": {"S": "PERIOD#2026-03-01T00:00:00Z"}}
# period reset + 35 days (docs/CONTRACTS.md)
EXPIRES_AT = str(int(datetime(2026, 5, 6, tzinfo=UTC).timestamp()))
OWNER = {":tier": {"S": "pro"}, ":partner_id": {"S": "p_1"}, ":expires_at": {"N": EXPIRES_AT}}


def item(**counters: int) -> dict[str, Any]:
    return {**KEY, **{name: {"N": str(value)} for name, value in counters.items()}}


@pytest.fixture
def stubbed() -> Iterator[tuple[MeteringTable, Stubber]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield MeteringTable(TABLE, client), stubber
        stubber.assert_no_pending_responses()


def test_a_reservation_is_one_conditional_update(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=3, prompt_tokens=10, completion_tokens=20, reserved_tokens=50)},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD requests :one, reserved_tokens :tokens, committed_tokens :tokens "
                "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"
            ),
            "ConditionExpression": "attribute_not_exists(committed_tokens) OR committed_tokens <= :headroom",
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":tokens": {"N": "50"},
                ":headroom": {"N": "950"},
                **OWNER,
            },
            "ReturnValues": "ALL_NEW",
        },
    )

    admitted, reading = table.reserve(ENTRY, tokens=50, budget=1000)

    assert admitted
    assert reading == LedgerReading(requests=3, prompt_tokens=10, completion_tokens=20, reserved_tokens=50)


def test_a_refused_reservation_still_counts_the_request(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException", http_status_code=400)
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=9, prompt_tokens=900, completion_tokens=80)},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD requests :one SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"
            ),
            "ExpressionAttributeValues": {":one": {"N": "1"}, **OWNER},
            "ReturnValues": "ALL_NEW",
        },
    )

    admitted, reading = table.reserve(ENTRY, tokens=50, budget=1000)

    assert not admitted
    assert reading.committed_tokens == 980


def test_a_reservation_larger_than_the_budget_is_refused_without_trying(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response("update_item", {"Attributes": item(requests=1)})  # the count only

    assert table.reserve(ENTRY, tokens=2000, budget=1000)[0] is False


def test_unlimited_budgets_reserve_without_a_condition(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=1, reserved_tokens=50)},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD requests :one, reserved_tokens :tokens, committed_tokens :tokens "
                "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"
            ),
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":tokens": {"N": "50"}, **OWNER},
            "ReturnValues": "ALL_NEW",
        },
    )

    assert table.reserve(ENTRY, tokens=50, budget=None)[0] is True


def test_settle_replaces_the_reservation_and_release_gives_it_back(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD reserved_tokens :released, committed_tokens :delta, "
                "prompt_tokens :prompt, completion_tokens :completion"
            ),
            "ExpressionAttributeValues": {
                ":released": {"N": "-50"},
                ":delta": {"N": "-20"},
                ":prompt": {"N": "12"},
                ":completion": {"N": "18"},
            },
        },
    )
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": "ADD reserved_tokens :released, committed_tokens :released",
            "ExpressionAttributeValues": {":released": {"N": "-50"}},
        },
    )

    table.settle(ENTRY, reserved=50, prompt_tokens=12, completion_tokens=18)
    table.release(ENTRY, reserved=50)


def test_the_quota_monitors_reading_is_read_from_its_item(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    reading_key = {"pk": {"S": "KEY#k1"}, "sk": {"S": "QUOTA#2026-03-01T00:00:00Z"}}
    stubber.add_response(
        "get_item",
        {
            "Item": {
                **reading_key,
                "used": {"N": "40"},
                "remaining": {"N": "60"},
                "limit": {"N": "100"},
                "as_of": {"S": "2026-03-02T10:00:00Z"},
            }
        },
        {"TableName": TABLE, "Key": reading_key},
    )
    stubber.add_response("get_item", {}, {"TableName": TABLE, "Key": reading_key})

    reading = table.quota_reading(ENTRY)

    assert reading is not None
    assert (reading.used, reading.remaining, reading.limit, reading.as_of) == (40, 60, 100, "2026-03-02T10:00:00Z")
    assert table.quota_reading(ENTRY) is None
