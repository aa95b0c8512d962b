"""DynamoDB adapter: the AI API's ledger as the operator console changes and reads it (the UsageLedger port).

An extension's tokens and a rotated key's carried tokens are written in the same UpdateItem as the matching
change of `committed_tokens` (down for an extension, up for carried tokens): the AI API's reservation is one
conditional write comparing `committed_tokens` with the tier's budget (conditions cannot add), so that one
attribute must already hold everything that counts against the budget (docs/decisions.md). The item keys and
attribute names: core.adapters.metering_items.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from core.adapters.metering_items import (
    CARRIED_TOKENS,
    EXTENSION_AT,
    EXTENSION_REQUESTS,
    EXTENSION_TOKENS,
    alert_prefix,
    key_pk,
    ledger_sk,
)
from core.admin.ports import LedgerItem, LedgerTotals
from core.aws import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# As the AI API keeps its items (core.ai.adapters.metering_table): the period's reset plus 35 days.
LEDGER_RETENTION = timedelta(days=35)
# Who the item belongs to, for an item the AI API has not written yet (it keeps them current on every request).
_OWNER = (
    "expires_at = if_not_exists(expires_at, :expires_at), tier = if_not_exists(tier, :tier), "
    "partner_id = if_not_exists(partner_id, :partner_id)"
)

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def _totals(item: dict[str, Any] | None) -> LedgerTotals:
    plain = {name: _deserialize(value) for name, value in (item or {}).items()}
    return LedgerTotals(
        requests=int(plain.get("requests", 0)),
        prompt_tokens=int(plain.get("prompt_tokens", 0)),
        completion_tokens=int(plain.get("completion_tokens", 0)),
        reserved_tokens=int(plain.get("reserved_tokens", 0)),
        extension_requests=int(plain.get(EXTENSION_REQUESTS, 0)),
        extension_tokens=int(plain.get(EXTENSION_TOKENS, 0)),
        carried_tokens=int(plain.get(CARRIED_TOKENS, 0)),
        extension_at=str(plain[EXTENSION_AT]) if plain.get(EXTENSION_AT) else None,
    )


class AdminLedger:
    """The UsageLedger port on the metering table."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def grant(self, item: LedgerItem, requests: int, tokens: int, at: datetime) -> LedgerTotals:
        return self._update(
            item,
            "ADD #extension_requests :requests, #extension_tokens :tokens, committed_tokens :uncommitted "
            f"SET #extension_at = :at, {_OWNER}",
            {
                "#extension_requests": EXTENSION_REQUESTS,
                "#extension_tokens": EXTENSION_TOKENS,
                "#extension_at": EXTENSION_AT,
            },
            {":requests": requests, ":tokens": tokens, ":uncommitted": -tokens, ":at": at.isoformat()},
        )

    def totals(self, api_key_id: str, period_start: datetime) -> LedgerTotals:
        found = self._client.get_item(
            TableName=self._table,
            Key=_values({"pk": key_pk(api_key_id), "sk": ledger_sk(period_start)}),
            ConsistentRead=True,
        )
        return _totals(found.get("Item"))

    def alerts(self, api_key_id: str, period_start: datetime) -> list[dict[str, Any]]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ProjectionExpression="threshold, utilisation, operator_sent_at, partner_email, sent_at",
            ExpressionAttributeValues=_values({":pk": key_pk(api_key_id), ":prefix": alert_prefix(period_start)}),
        )
        found = []
        for page in pages:
            for item in page.get("Items", []):
                plain = {name: _deserialize(value) for name, value in item.items()}
                found.append(
                    {name: (int(value) if name == "threshold" else str(value)) for name, value in plain.items()}
                )
        return sorted(found, key=lambda alert: int(alert.get("threshold", 0)))

    def _update(self, item: LedgerItem, expression: str, names: dict[str, str], values: dict[str, Any]) -> LedgerTotals:
        owner = {
            ":expires_at": int((item.period_reset + LEDGER_RETENTION).timestamp()),
            ":tier": item.tier,
            ":partner_id": item.partner_id,
        }
        updated = self._client.update_item(
            TableName=self._table,
            Key=_values({"pk": key_pk(item.api_key_id), "sk": ledger_sk(item.period_start)}),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_values({**values, **owner}),
            ReturnValues="UPDATED_NEW",  # AdminFunction may read back only what it writes
        )
        return _totals(updated.get("Attributes"))
