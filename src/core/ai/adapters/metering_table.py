"""DynamoDB adapter: the AI API's ledger in the metering table (the TokenLedger port).

Items are `pk = KEY#<api key id>`, `sk = PERIOD#<period start>` (docs/CONTRACTS.md), updated with ADD so
concurrent requests never lose a count. `committed_tokens` (prompt + completion + reserved) exists so that
one conditional UpdateItem can admit a reservation: condition expressions compare, they cannot add.
The quota monitor's `QUOTA#<period start>` items are only read here. The keys: core.adapters.metering_items.
"""

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.adapters.metering_items import (
    CARRIED_REQUESTS,
    CARRIED_TOKENS,
    bucket_requests_attribute,
    bucket_start,
    bucket_tokens_attribute,
    key_pk,
    ledger_sk,
    model_tokens_attribute,
    reading_sk,
)
from core.ai.ledger import LedgerEntry, LedgerReading, QuotaReading, TokenHold, UsageBucket
from core.aws import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Each reservation in flight is an attribute `hold_<id>` = {tokens, until} on its ledger item (docs/CONTRACTS.md).
HOLD_PREFIX = "hold_"
# Ledger items outlive their period by this much (docs/CONTRACTS.md), for support and billing questions.
LEDGER_RETENTION = timedelta(days=35)

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def _reading(item: dict[str, Any] | None) -> LedgerReading:
    plain = {name: _deserialize(value) for name, value in (item or {}).items()}
    return LedgerReading(
        requests=int(plain.get("requests", 0)),
        prompt_tokens=int(plain.get("prompt_tokens", 0)),
        completion_tokens=int(plain.get("completion_tokens", 0)),
        reserved_tokens=int(plain.get("reserved_tokens", 0)),
        carried_tokens=int(plain.get(CARRIED_TOKENS, 0)),
        carried_requests=int(plain.get(CARRIED_REQUESTS, 0)),
        buckets=_buckets(plain),
    )


def _buckets(plain: dict[str, Any]) -> tuple[UsageBucket, ...]:
    """The per-slice counters of a ledger item (`requests_at_<hour>`, `tokens_at_<hour>`), oldest first."""
    found: dict[Any, dict[str, int]] = {}
    for name, value in plain.items():
        parsed = bucket_start(name)
        if parsed is not None:
            kind, start = parsed
            found.setdefault(start, {})[kind] = int(value)
    return tuple(UsageBucket(start, **counters) for start, counters in sorted(found.items()))


def _holds(item: dict[str, Any]) -> list[TokenHold]:
    held = []
    for name, value in item.items():
        if name.startswith(HOLD_PREFIX) and "M" in value:
            plain = _deserialize(value)
            held.append(
                TokenHold(id=name.removeprefix(HOLD_PREFIX), tokens=int(plain["tokens"]), until=int(plain["until"]))
            )
    return held


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _counted(entry: LedgerEntry) -> tuple[str, dict[str, str]]:
    """The ADD that counts one request, in the period and in its slice of it (when the entry has one)."""
    if entry.bucket is None:
        return "ADD requests :one", {}
    return "ADD requests :one, #bucket_requests :one", {"#bucket_requests": bucket_requests_attribute(entry.bucket)}


# Who the item belongs to, kept current on every request (the tier can change mid-period).
_OWNER = "SET tier = :tier, partner_id = :partner_id, expires_at = :expires_at"


class MeteringTable:
    """The TokenLedger port on DynamoDB."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def count_request(self, entry: LedgerEntry) -> LedgerReading:
        return _reading(self._update_and_read(entry))

    def _update_and_read(self, entry: LedgerEntry, *, count: bool = True) -> dict[str, Any]:
        """Count the request (or only refresh the owner) and read the whole item back."""
        values: dict[str, Any] = self._owner(entry)
        update: dict[str, Any] = {"UpdateExpression": _OWNER}
        if count:
            adds, names = _counted(entry)
            update = {"UpdateExpression": f"{adds} {_OWNER}"} | ({"ExpressionAttributeNames": names} if names else {})
            values = {":one": 1, **values}
        updated = self._client.update_item(
            TableName=self._table,
            Key=self._key(entry),
            **update,
            ExpressionAttributeValues=_values(values),
            ReturnValues="ALL_NEW",
        )
        return dict(updated.get("Attributes") or {})

    def reserve(
        self, entry: LedgerEntry, hold: TokenHold, budget: int | None, now: float
    ) -> tuple[bool, LedgerReading]:
        if budget is not None and hold.tokens > budget:
            return False, self.count_request(entry)
        try:
            return True, self._hold(entry, hold, budget, count=True)
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        updated = self._update_and_read(entry)
        stale = [held for held in _holds(updated) if held.until < now]
        if not stale:
            return False, _reading(updated)
        # Holds of functions that can no longer settle them are in the way: give them back, then try once more.
        for held in stale:
            self.release(entry, held)
        try:
            return True, self._hold(entry, hold, budget, count=False)
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        return False, _reading(self._update_and_read(entry, count=False))

    def settle(self, entry: LedgerEntry, hold: TokenHold, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace a hold by what the model really used (in the period, its slice, and the hold's model)."""
        adds = (
            "ADD reserved_tokens :released, committed_tokens :delta, "
            "prompt_tokens :prompt, completion_tokens :completion"
        )
        values: dict[str, Any] = {
            ":released": -hold.tokens,
            ":delta": prompt_tokens + completion_tokens - hold.tokens,
            ":prompt": prompt_tokens,
            ":completion": completion_tokens,
        }
        names: dict[str, str] = {}
        if entry.bucket:
            adds += ", #bucket_tokens :used"
            values[":used"] = prompt_tokens + completion_tokens
            names["#bucket_tokens"] = bucket_tokens_attribute(entry.bucket)
        if hold.model:
            adds += ", #model_prompt :prompt, #model_completion :completion"
            names["#model_prompt"] = model_tokens_attribute("prompt", hold.model)
            names["#model_completion"] = model_tokens_attribute("completion", hold.model)
        self._end_hold(entry, hold, adds, values, names)

    def release(self, entry: LedgerEntry, hold: TokenHold) -> None:
        """Give a hold back: the request was not served (or its function is gone), so nothing is charged."""
        self._end_hold(
            entry, hold, "ADD reserved_tokens :released, committed_tokens :released", {":released": -hold.tokens}
        )

    def _hold(self, entry: LedgerEntry, hold: TokenHold, budget: int | None, *, count: bool) -> LedgerReading:
        """One conditional UpdateItem: record the hold if what is committed leaves room for it."""
        # The retry after giving stale holds back does not count the request again.
        adds, names = "ADD reserved_tokens :tokens, committed_tokens :tokens", dict[str, str]()
        if count:
            counted, names = _counted(entry)
            adds = f"{counted}, reserved_tokens :tokens, committed_tokens :tokens"
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(entry),
            "UpdateExpression": f"{adds} {_OWNER}, #hold = :hold",
            "ExpressionAttributeNames": {"#hold": hold.attribute, **names},
            "ReturnValues": "ALL_NEW",
        }
        values: dict[str, Any] = {
            ":tokens": hold.tokens,
            ":hold": {"tokens": hold.tokens, "until": hold.until},
            **self._owner(entry),
        }
        if count:
            values[":one"] = 1
        if budget is not None:
            update["ConditionExpression"] = "attribute_not_exists(committed_tokens) OR committed_tokens <= :headroom"
            values[":headroom"] = budget - hold.tokens
        updated = self._client.update_item(**update, ExpressionAttributeValues=_values(values))
        return _reading(updated.get("Attributes"))

    def _end_hold(
        self,
        entry: LedgerEntry,
        hold: TokenHold,
        adds: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        # Conditional on the hold, so a retried call (its first answer lost) or a late one changes nothing.
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(entry),
                UpdateExpression=f"{adds} REMOVE #hold",
                ConditionExpression="attribute_exists(#hold)",
                ExpressionAttributeNames={"#hold": hold.attribute, **(names or {})},
                ExpressionAttributeValues=_values(values),
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None:
        found = self._client.get_item(
            TableName=self._table, Key=_values({"pk": key_pk(entry.api_key_id), "sk": reading_sk(entry.period_start)})
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

    def _key(self, entry: LedgerEntry) -> dict[str, Any]:
        return _values({"pk": key_pk(entry.api_key_id), "sk": ledger_sk(entry.period_start)})

    @staticmethod
    def _owner(entry: LedgerEntry) -> dict[str, Any]:
        return {
            ":tier": entry.tier,
            ":partner_id": entry.partner_id,
            ":expires_at": int((entry.period_reset + LEDGER_RETENTION).timestamp()),
        }
