"""The console's ledger writes, pinned with Stubber against botocore's model: an extension and carried tokens each
move committed_tokens in the same UpdateItem (the AI API's budget check is one conditional write on it), only
the attributes AdminFunction's policy allows, read back UPDATED_NEW."""

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from core.admin.adapters.ledger import AdminLedger
from core.admin.ports import LedgerItem, LedgerTotals

ITEM = LedgerItem(
    api_key_id="k1",
    period_start=datetime(2026, 3, 1, tzinfo=UTC),
    period_reset=datetime(2026, 4, 1, tzinfo=UTC),
    tier="pro",
    partner_id="p_1",
)
KEY = {"pk": {"S": "KEY#k1"}, "sk": {"S": "PERIOD#2026-03-01T00:00:00Z"}}
OWNER = {
    ":expires_at": {"N": str(int(datetime(2026, 5, 6, tzinfo=UTC).timestamp()))},
    ":tier": {"S": "pro"},
    ":partner_id": {"S": "p_1"},
}
OWNER_SET = (
    "expires_at = if_not_exists(expires_at, :expires_at), tier = if_not_exists(tier, :tier), "
    "partner_id = if_not_exists(partner_id, :partner_id)"
)


@pytest.fixture
def stubbed() -> Iterator[tuple[AdminLedger, Stubber]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield AdminLedger("metering", client), stubber
        stubber.assert_no_pending_responses()


def test_an_extension_is_one_update_that_also_lowers_committed_tokens(stubbed: tuple[AdminLedger, Stubber]) -> None:
    ledger, stubber = stubbed
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    stubber.add_response(
        "update_item",
        {"Attributes": {"extension_requests": {"N": "5"}, "extension_tokens": {"N": "300"}}},
        {
            "TableName": "metering",
            "Key": KEY,
            "UpdateExpression": "ADD #extension_requests :requests, #extension_tokens :tokens, "
            f"committed_tokens :uncommitted SET #extension_at = :at, {OWNER_SET}",
            "ExpressionAttributeNames": {
                "#extension_requests": "extension_requests",
                "#extension_tokens": "extension_tokens",
                "#extension_at": "extension_at",
            },
            "ExpressionAttributeValues": {
                ":requests": {"N": "5"},
                ":tokens": {"N": "300"},
                ":uncommitted": {"N": "-300"},
                ":at": {"S": at.isoformat()},
                **OWNER,
            },
            "ReturnValues": "UPDATED_NEW",
        },
    )

    totals = ledger.grant(ITEM, 5, 300, at)

    assert (totals.extension_requests, totals.extension_tokens) == (5, 300)


def test_totals_read_the_item_consistently_and_default_to_zero(stubbed: tuple[AdminLedger, Stubber]) -> None:
    ledger, stubber = stubbed
    expected = {"TableName": "metering", "Key": KEY, "ConsistentRead": True}
    stubber.add_response("get_item", {}, expected)
    stubber.add_response(
        "get_item",
        {"Item": {**KEY, "requests": {"N": "7"}, "prompt_tokens": {"N": "10"}, "extension_at": {"S": "t"}}},
        expected,
    )
    assert ledger.totals("k1", ITEM.period_start) == LedgerTotals()
    assert ledger.totals("k1", ITEM.period_start) == LedgerTotals(requests=7, prompt_tokens=10, extension_at="t")


def test_a_periods_alerts_are_one_query_on_the_keys_alert_items(stubbed: tuple[AdminLedger, Stubber]) -> None:
    ledger, stubber = stubbed
    stubber.add_response(
        "query",
        {
            "Items": [
                {"threshold": {"N": "80"}, "sent_at": {"S": "b"}},
                {"threshold": {"N": "50"}, "sent_at": {"S": "a"}, "partner_email": {"S": "sent"}},
            ]
        },
        {
            "TableName": "metering",
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ProjectionExpression": "threshold, utilisation, operator_sent_at, partner_email, sent_at",
            "ExpressionAttributeValues": {":pk": {"S": "KEY#k1"}, ":prefix": {"S": "ALERT#2026-03-01T00:00:00Z#"}},
        },
    )
    assert ledger.alerts("k1", ITEM.period_start) == [
        {"threshold": 50, "sent_at": "a", "partner_email": "sent"},
        {"threshold": 80, "sent_at": "b"},
    ]
