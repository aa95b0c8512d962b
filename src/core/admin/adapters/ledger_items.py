"""The AI API's ledger items as the usage export reads them: a Scan of the metering table for the period starts
asked (`sk = PERIOD#<start>`; the table's key is per API key, and a period's items are spread over all of them).
A Scan is paid once per export (billing, once a period); the counters are read as the AI API wrote them
(docs/CONTRACTS.md, "Metering table"), never a rotated key's `carried_tokens`."""

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer

from core.adapters.metering_items import api_key_id_of, ledger_period_start, ledger_sk, tokens_by_model
from core.admin.models import LedgerUsage
from core.aws import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Items a Scan page reads (DynamoDB stops at 1 MB anyway).
SCAN_PAGE_ITEMS = 1000
_deserialize = TypeDeserializer().deserialize


class LedgerScan:
    """The LedgerItems port on the metering table."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def period_items(self, starts: list[datetime]) -> Iterator[LedgerUsage]:
        keys = sorted({ledger_sk(start) for start in starts})
        if not keys:
            return
        placeholders = {f":sk{index}": {"S": key} for index, key in enumerate(keys)}
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": f"#sk IN ({', '.join(placeholders)})",
            "ExpressionAttributeNames": {"#sk": "sk"},
            "ExpressionAttributeValues": placeholders,
            "Limit": SCAN_PAGE_ITEMS,
        }
        while True:
            answer = self._client.scan(**request)
            for item in answer.get("Items", []):
                usage = _usage(item)
                if usage is not None:
                    yield usage
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _usage(item: dict[str, Any]) -> LedgerUsage | None:
    plain = {name: _deserialize(value) for name, value in item.items()}
    partner_id, key_id = plain.get("partner_id"), api_key_id_of(str(plain.get("pk", "")))
    if not isinstance(partner_id, str) or key_id is None:
        return None  # not an item a request of a partner's key wrote
    return LedgerUsage(
        api_key_id=key_id,
        period_start=ledger_period_start(str(plain["sk"])),
        partner_id=partner_id,
        tier=str(plain["tier"]) if "tier" in plain else None,
        prompt_tokens=int(plain.get("prompt_tokens", 0)),
        completion_tokens=int(plain.get("completion_tokens", 0)),
        extension_requests=int(plain.get("extension_requests", 0)),
        extension_tokens=int(plain.get("extension_tokens", 0)),
        tokens_by_model=tokens_by_model(plain),
    )
