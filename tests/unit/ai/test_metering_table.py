"""The ledger's DynamoDB requests, pinned with Stubber against botocore's service model: one conditional
UpdateItem admits a reservation, a refused one is still counted, and settle/release adjust the same item."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core.ai.adapters.metering_table import MeteringTable
from core.ai.ledger import LedgerEntry, LedgerReading, TokenHold, UsageBucket

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


HOLD = TokenHold(id="h1", tokens=50, until=1_000)
HOLD_VALUE = {"M": {"tokens": {"N": "50"}, "until": {"N": "1000"}}}
RESERVE = (
    "ADD requests :one, reserved_tokens :tokens, committed_tokens :tokens "
    "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at, #hold = :hold"
)
COUNT = "ADD requests :one SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"


def reserve_request(expression: str = RESERVE, **values: dict[str, str]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": {"#hold": "hold_h1"},
        "ExpressionAttributeValues": {":tokens": {"N": "50"}, ":hold": HOLD_VALUE, **OWNER, **values},
        "ReturnValues": "ALL_NEW",
    }
    if ":headroom" in values:
        request["ConditionExpression"] = "attribute_not_exists(committed_tokens) OR committed_tokens <= :headroom"
    return request


def test_a_reservation_is_one_conditional_update_that_records_its_hold(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=3, prompt_tokens=10, completion_tokens=20, reserved_tokens=50)},
        reserve_request(**{":one": {"N": "1"}, ":headroom": {"N": "950"}}),
    )

    admitted, reading = table.reserve(ENTRY, HOLD, budget=1000, now=900.0)

    assert admitted
    assert reading == LedgerReading(requests=3, prompt_tokens=10, completion_tokens=20, reserved_tokens=50)


def test_a_refused_reservation_still_counts_the_request(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException", http_status_code=400)
    # A hold whose function has until 1000 to settle it: at 900 it is not in anyone's way yet
    live = {"hold_h0": {"M": {"tokens": {"N": "30"}, "until": {"N": "1000"}}}}
    stubber.add_response(
        "update_item",
        {"Attributes": {**item(requests=9, prompt_tokens=900, completion_tokens=50, reserved_tokens=30), **live}},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": COUNT,
            "ExpressionAttributeValues": {":one": {"N": "1"}, **OWNER},
            "ReturnValues": "ALL_NEW",
        },
    )

    admitted, reading = table.reserve(ENTRY, HOLD, budget=1000, now=900.0)

    assert not admitted
    assert reading.committed_tokens == 980


def test_a_refused_reservation_gives_back_holds_past_their_deadline_and_tries_again(
    stubbed: tuple[MeteringTable, Stubber],
) -> None:
    table, stubber = stubbed
    stubber.add_client_error("update_item", service_error_code="ConditionalCheckFailedException", http_status_code=400)
    stale = {"hold_h0": {"M": {"tokens": {"N": "30"}, "until": {"N": "800"}}}}
    stubber.add_response(
        "update_item", {"Attributes": {**item(requests=9, prompt_tokens=930, reserved_tokens=30), **stale}}
    )
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": "ADD reserved_tokens :released, committed_tokens :released REMOVE #hold",
            "ConditionExpression": "attribute_exists(#hold)",
            "ExpressionAttributeNames": {"#hold": "hold_h0"},
            "ExpressionAttributeValues": {":released": {"N": "-30"}},
        },
    )
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=9, prompt_tokens=930, reserved_tokens=50)},
        reserve_request(
            "ADD reserved_tokens :tokens, committed_tokens :tokens "
            "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at, #hold = :hold",
            **{":headroom": {"N": "950"}},
        ),
    )

    admitted, reading = table.reserve(ENTRY, HOLD, budget=1000, now=900.0)

    # The request was counted once, the stale hold given back, and this one held
    assert admitted
    assert reading.reserved_tokens == 50


def test_a_reservation_larger_than_the_budget_is_refused_without_trying(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response("update_item", {"Attributes": item(requests=1)})  # the count only

    assert table.reserve(ENTRY, TokenHold("h1", 2000, 1_000), budget=1000, now=900.0)[0] is False


def test_unlimited_budgets_reserve_without_a_condition(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item", {"Attributes": item(requests=1, reserved_tokens=50)}, reserve_request(**{":one": {"N": "1"}})
    )

    assert table.reserve(ENTRY, HOLD, budget=None, now=900.0)[0] is True


def test_settle_and_release_end_the_hold_and_change_nothing_once_it_is_gone(
    stubbed: tuple[MeteringTable, Stubber],
) -> None:
    table, stubber = stubbed
    settle = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": (
            "ADD reserved_tokens :released, committed_tokens :delta, "
            "prompt_tokens :prompt, completion_tokens :completion REMOVE #hold"
        ),
        "ConditionExpression": "attribute_exists(#hold)",
        "ExpressionAttributeNames": {"#hold": "hold_h1"},
        "ExpressionAttributeValues": {
            ":released": {"N": "-50"},
            ":delta": {"N": "-20"},
            ":prompt": {"N": "12"},
            ":completion": {"N": "18"},
        },
    }
    release = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": "ADD reserved_tokens :released, committed_tokens :released REMOVE #hold",
        "ConditionExpression": "attribute_exists(#hold)",
        "ExpressionAttributeNames": {"#hold": "hold_h1"},
        "ExpressionAttributeValues": {":released": {"N": "-50"}},
    }
    stubber.add_response("update_item", {}, settle)
    stubber.add_client_error(
        "update_item", "ConditionalCheckFailedException", http_status_code=400, expected_params=release
    )

    table.settle(ENTRY, HOLD, prompt_tokens=12, completion_tokens=18)
    table.release(ENTRY, HOLD)  # already settled: the condition refuses it, and that is not an error


def test_settling_a_hold_of_a_model_adds_its_tokens_to_that_models_counters_in_the_same_write(
    stubbed: tuple[MeteringTable, Stubber],
) -> None:
    table, stubber = stubbed
    model = "anthropic.claude-3-haiku-20240307-v1:0"  # dots, dashes and a colon: names go through #placeholders
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD reserved_tokens :released, committed_tokens :delta, prompt_tokens :prompt, "
                "completion_tokens :completion, #model_prompt :prompt, #model_completion :completion REMOVE #hold"
            ),
            "ConditionExpression": "attribute_exists(#hold)",
            "ExpressionAttributeNames": {
                "#hold": "hold_h1",
                "#model_prompt": f"prompt_tokens@{model}",
                "#model_completion": f"completion_tokens@{model}",
            },
            "ExpressionAttributeValues": {
                ":released": {"N": "-50"},
                ":delta": {"N": "-20"},
                ":prompt": {"N": "12"},
                ":completion": {"N": "18"},
            },
        },
    )

    table.settle(ENTRY, replace(HOLD, model=model), prompt_tokens=12, completion_tokens=18)


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


# The usage chart's slices (core.periods.usage_bucket): an entry made at 14:25 on a DAY tier counts in 14:00.
SLICED = replace(ENTRY, bucket=datetime(2026, 3, 10, 14, tzinfo=UTC))


def test_a_request_is_also_counted_in_its_slice_of_the_period(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item",
        {"Attributes": item(requests=3, requests_at_2026031014=2, requests_at_2026031009=1, tokens_at_2026031009=40)},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD requests :one, #bucket_requests :one "
                "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"
            ),
            "ExpressionAttributeNames": {"#bucket_requests": "requests_at_2026031014"},
            "ExpressionAttributeValues": {":one": {"N": "1"}, **OWNER},
            "ReturnValues": "ALL_NEW",
        },
    )

    reading = table.count_request(SLICED)

    # The reading carries the slices, oldest first
    assert reading.requests == 3
    assert reading.buckets == (
        UsageBucket(datetime(2026, 3, 10, 9, tzinfo=UTC), requests=1, tokens=40),
        UsageBucket(datetime(2026, 3, 10, 14, tzinfo=UTC), requests=2, tokens=0),
    )


def test_a_reservation_counts_its_slice_and_settling_adds_the_tokens_used_to_it(
    stubbed: tuple[MeteringTable, Stubber],
) -> None:
    table, stubber = stubbed
    reserve = reserve_request(
        "ADD requests :one, #bucket_requests :one, reserved_tokens :tokens, committed_tokens :tokens "
        "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at, #hold = :hold",
        **{":one": {"N": "1"}},
    )
    reserve["ExpressionAttributeNames"]["#bucket_requests"] = "requests_at_2026031014"
    stubber.add_response("update_item", {"Attributes": item(requests=1, reserved_tokens=50)}, reserve)
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": (
                "ADD reserved_tokens :released, committed_tokens :delta, "
                "prompt_tokens :prompt, completion_tokens :completion, #bucket_tokens :used REMOVE #hold"
            ),
            "ConditionExpression": "attribute_exists(#hold)",
            "ExpressionAttributeNames": {"#hold": "hold_h1", "#bucket_tokens": "tokens_at_2026031014"},
            "ExpressionAttributeValues": {
                ":released": {"N": "-50"},
                ":delta": {"N": "-20"},
                ":prompt": {"N": "12"},
                ":completion": {"N": "18"},
                ":used": {"N": "30"},
            },
        },
    )

    assert table.reserve(SLICED, HOLD, budget=None, now=900.0)[0] is True
    table.settle(SLICED, HOLD, prompt_tokens=12, completion_tokens=18)


def test_attributes_that_only_look_like_slices_are_ignored(stubbed: tuple[MeteringTable, Stubber]) -> None:
    table, stubber = stubbed
    stubber.add_response(
        "update_item", {"Attributes": item(requests=1, requests_at_garbage=5, tokens_at_2026139999=3)}, None
    )

    assert table.count_request(SLICED).buckets == ()
