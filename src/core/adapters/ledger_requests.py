"""DynamoDB adapter: the AI API's ledger in the metering table, read for a tier change's carry-over (the kernel's
RequestCounts port, used by core.plan_moves for billing and the operator console). The item keys are
core.adapters.metering_items'; the AI API writes these items."""

from datetime import datetime
from typing import TYPE_CHECKING

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from core.adapters.metering_items import LEDGER_LAST, key_pk, ledger_period_start, ledger_sk
from core.aws import dynamodb_client
from core.models import PeriodRequests

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


class LedgerRequests:
    """The RequestCounts port on the metering table."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def requests_since(self, api_key_id: str, since: datetime) -> list[PeriodRequests]:
        """The key's ledger items whose period starts at or after `since`."""
        bounds = {":pk": key_pk(api_key_id), ":first": ledger_sk(since), ":last": LEDGER_LAST}
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ProjectionExpression="sk, tier, requests",
            ExpressionAttributeValues={name: _serialize(value) for name, value in bounds.items()},
        )
        found = []
        for page in pages:
            for item in page.get("Items", []):
                plain = {name: _deserialize(value) for name, value in item.items()}
                found.append(
                    PeriodRequests(
                        period_start=ledger_period_start(str(plain["sk"])),
                        tier=str(plain.get("tier", "")),
                        requests=int(plain.get("requests", 0)),
                    )
                )
        return found
