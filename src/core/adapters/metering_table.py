"""DynamoDB adapter: the AI API's ledger in the metering table (the TokenLedger port).

Items are `pk = KEY#<api key id>`, `sk = PERIOD#<period start>` (docs/CONTRACTS.md), updated with ADD so
concurrent requests never lose a count. `committed_tokens` (prompt + completion + reserved) exists so that
one conditional UpdateItem can admit a reservation: condition expressions compare, they cannot add.
The quota monitor's `QUOTA#<period start>` items are only read here.
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.aws import dynamodb_client
from core.ledger import LedgerEntry, LedgerReading, PeriodRequests, QuotaReading
from core.periods import period_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Ledger items outlive their period by this much (docs/CONTRACTS.md), for support and billing questions.
LEDGER_RETENTION = timedelta(days=35)

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def key_pk(api_key_id: str) -> str:
    return f"KEY#{api_key_id}"


def ledger_sk(entry: LedgerEntry) -> str:
    return f"PERIOD#{period_key(entry.period_start)}"


def quota_sk(entry: LedgerEntry) -> str:
    return f"QUOTA#{period_key(entry.period_start)}"


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def _reading(item: dict[str, Any] | None) -> LedgerReading:
    plain = {name: _deserialize(value) for name, value in (item or {}).items()}
    return LedgerReading(
        requests=int(plain.get("requests", 0)),
        prompt_tokens=int(plain.get("prompt_tokens", 0)),
        completion_tokens=int(plain.get("completion_tokens", 0)),
        reserved_tokens=int(plain.get("reserved_tokens", 0)),
    )


# Who the item belongs to, kept current on every request (the tier can change mid-period).
_OWNER = "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"


class MeteringTable:
    """The TokenLedger port on DynamoDB."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def count_request(self, entry: LedgerEntry) -> LedgerReading:
        updated = self._client.update_item(
            TableName=self._table,
            Key=self._key(entry),
            UpdateExpression=f"ADD requests :one {_OWNER}",
            ExpressionAttributeValues=_values({":one": 1, **self._owner(entry)}),
            ReturnValues="ALL_NEW",
        )
        return _reading(updated.get("Attributes"))

    def reserve(self, entry: LedgerEntry, tokens: int, budget: int | None) -> tuple[bool, LedgerReading]:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(entry),
            "UpdateExpression": f"ADD requests :one, reserved_tokens :tokens, committed_tokens :tokens {_OWNER}",
            "ReturnValues": "ALL_NEW",
        }
        values: dict[str, Any] = {":one": 1, ":tokens": tokens, **self._owner(entry)}
        if budget is not None:
            headroom = budget - tokens
            if headroom < 0:
                return False, self.count_request(entry)
            # Admitted only if what is committed leaves room for this reservation, atomically with the hold.
            update["ConditionExpression"] = "attribute_not_exists(committed_tokens) OR committed_tokens <= :headroom"
            values[":headroom"] = headroom
        try:
            updated = self._client.update_item(**update, ExpressionAttributeValues=_values(values))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False, self.count_request(entry)
        return True, _reading(updated.get("Attributes"))

    def settle(self, entry: LedgerEntry, reserved: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace a reservation by what the model really used."""
        self._client.update_item(
            TableName=self._table,
            Key=self._key(entry),
            UpdateExpression=(
                "ADD reserved_tokens :released, committed_tokens :delta, "
                "prompt_tokens :prompt, completion_tokens :completion"
            ),
            ExpressionAttributeValues=_values(
                {
                    ":released": -reserved,
                    ":delta": prompt_tokens + completion_tokens - reserved,
                    ":prompt": prompt_tokens,
                    ":completion": completion_tokens,
                }
            ),
        )

    def release(self, entry: LedgerEntry, reserved: int) -> None:
        """Give a reservation back: the request was not served, so nothing is charged."""
        self._client.update_item(
            TableName=self._table,
            Key=self._key(entry),
            UpdateExpression="ADD reserved_tokens :released, committed_tokens :released",
            ExpressionAttributeValues=_values({":released": -reserved}),
        )

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None:
        found = self._client.get_item(
            TableName=self._table, Key=_values({"pk": key_pk(entry.api_key_id), "sk": quota_sk(entry)})
        )
        if "Item" not in found:
            return None
        item = {name: _deserialize(value) for name, value in found["Item"].items()}
        try:
            return QuotaReading(
                used=int(item["used"]),
                remaining=int(item["remaining"]),
                limit=int(item["limit"]),
                as_of=str(item["as_of"]),
            )
        except (KeyError, TypeError, ValueError):
            return None  # not a reading we understand: serve the ledger's own numbers

    def requests_since(self, api_key_id: str, since: datetime) -> list[PeriodRequests]:
        """The key's ledger items whose period starts at or after `since` (the tier webhook's carry-over)."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ProjectionExpression="sk, tier, requests",
            ExpressionAttributeValues=_values(
                {":pk": key_pk(api_key_id), ":first": f"PERIOD#{period_key(since)}", ":last": "PERIOD#~"}
            ),
        )
        found = []
        for page in pages:
            for item in page.get("Items", []):
                plain = {name: _deserialize(value) for name, value in item.items()}
                start = datetime.strptime(str(plain["sk"]).removeprefix("PERIOD#"), "%Y-%m-%dT%H:%M:%SZ")
                found.append(
                    PeriodRequests(
                        period_start=start.replace(tzinfo=UTC),
                        tier=str(plain.get("tier", "")),
                        requests=int(plain.get("requests", 0)),
                    )
                )
        return found

    def _key(self, entry: LedgerEntry) -> dict[str, Any]:
        return _values({"pk": key_pk(entry.api_key_id), "sk": ledger_sk(entry)})

    @staticmethod
    def _owner(entry: LedgerEntry) -> dict[str, Any]:
        return {
            ":tier": entry.tier,
            ":partner_id": entry.partner_id,
            ":expires_at": int((entry.period_reset + LEDGER_RETENTION).timestamp()),
        }
