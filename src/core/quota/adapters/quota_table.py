"""DynamoDB adapter: the quota monitor's items in the metering table (the QuotaRecords port).

Per key and quota period (docs/CONTRACTS.md): it reads the AI API's ledger (`PERIOD#<start>`, written by
core.ai.adapters.metering_table) and its own latest reading (`QUOTA#<start>`) in batches of 100 items, writes
readings that changed, and keeps one `ALERT#<start>#<threshold>` item per alert. An alert is claimed with a
conditional write (so two runs, or one run delivered twice, cannot both send it), marked per channel as it
is delivered, and completed with `sent_at`. A claim whose run died expires (`claimed_until`) and the next
run takes it over, sending only what was not sent yet.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.adapters.metering_items import DORMANT_SWEEP_PK, alert_sk, key_pk, ledger_sk, reading_sk, sweep_day_sk
from core.aws import dynamodb_client
from core.quota.standing import AlertClaim, AlertState, ClaimResult, KeyQuotaReading, PeriodRecords, TokenCounters

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# DynamoDB's limits: BatchGetItem takes 100 keys, BatchWriteItem 25 requests.
BATCH_GET_SIZE = 100
BATCH_WRITE_SIZE = 25
# Unprocessed items are retried with exponential backoff (as AWS advises), this many times.
BATCH_ATTEMPTS = 8
# Batches in flight at once (boto3 clients are thread-safe): 10,000 keys are 200 BatchGetItem calls.
BATCH_CONCURRENCY = 4

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items() if value is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserialize(value) for name, value in item.items()}


def _chunks[T](items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QuotaTable:
    """The QuotaRecords port on the metering table."""

    def __init__(
        self, table_name: str, client: "DynamoDBClient | None" = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()
        self._sleep = sleep

    # --- Reading what the AI API counted and what the last run saw ------------------------------------

    def read_period(self, keys: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], PeriodRecords]:
        """The ledger counters and the previous reading of each (key id, period start)."""
        wanted = list(dict.fromkeys(keys))
        requests = [
            {"pk": key_pk(key_id), "sk": sk(start)} for key_id, start in wanted for sk in (ledger_sk, reading_sk)
        ]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        chunks = [[_item(key) for key in chunk] for chunk in _chunks(requests, BATCH_GET_SIZE)]
        with ThreadPoolExecutor(BATCH_CONCURRENCY) as pool:
            for items in pool.map(self._batch_get, chunks):
                for item in items:
                    plain = _plain(item)
                    found[(str(plain["pk"]), str(plain["sk"]))] = plain
        records = {}
        for key_id, start in wanted:
            ledger = found.get((key_pk(key_id), ledger_sk(start)))
            reading = found.get((key_pk(key_id), reading_sk(start)))
            records[(key_id, start)] = PeriodRecords(
                tokens=_tokens(ledger) if ledger is not None else None,
                reading=_reading(key_id, start, reading) if reading is not None else None,
            )
        return records

    def write_readings(self, readings: list[KeyQuotaReading]) -> None:
        puts = [
            _item(
                {
                    "pk": key_pk(reading.api_key_id),
                    "sk": reading_sk(reading.period_start),
                    "tier": reading.tier,
                    "used": reading.used,
                    "remaining": reading.remaining,
                    "limit": reading.limit,
                    "as_of": reading.as_of,
                    "requests": reading.requests,
                    "tokens_used": reading.tokens_used,
                    "alerted_threshold": reading.alerted_threshold,
                    "expires_at": reading.expires_at,
                }
            )
            for reading in readings
        ]
        chunks = [[{"PutRequest": {"Item": item}} for item in chunk] for chunk in _chunks(puts, BATCH_WRITE_SIZE)]
        with ThreadPoolExecutor(BATCH_CONCURRENCY) as pool:
            list(pool.map(self._batch_write, chunks))

    # --- Alerts: claim, mark, complete, release -------------------------------------------------------

    # --- The day's dormant-key sweep ------------------------------------------------------------------------

    def claim_daily_sweep(self, day: date, now: float, lease_seconds: int, expires_at: int) -> bool:
        """Take the day's dormant-key sweep: the first run of the day, or a later one if that run died."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({"pk": DORMANT_SWEEP_PK, "sk": sweep_day_sk(day)}),
                UpdateExpression="SET claimed_until = :until, expires_at = :expires_at",
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (attribute_not_exists(done_at) AND claimed_until < :now)"
                ),
                ExpressionAttributeValues=_item(
                    {":until": int(now) + lease_seconds, ":expires_at": expires_at, ":now": int(now)}
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def finish_daily_sweep(self, day: date, now: datetime) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=_item({"pk": DORMANT_SWEEP_PK, "sk": sweep_day_sk(day)}),
            UpdateExpression="SET done_at = :now",
            ExpressionAttributeValues=_item({":now": now.isoformat()}),
        )

    def claim_alert(self, claim: AlertClaim, now: float, lease_seconds: int) -> ClaimResult:
        """Take the alert for this run: a new one, or one whose previous holder died before finishing."""
        until = int(now) + lease_seconds
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=self._alert_key(claim),
                UpdateExpression=(
                    "SET threshold = :threshold, tier = :tier, partner_id = :partner_id, "
                    "utilisation = :utilisation, claimed_until = :until, expires_at = :expires_at"
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (attribute_not_exists(sent_at) AND claimed_until < :now)"
                ),
                ExpressionAttributeValues=_item(
                    {
                        ":threshold": claim.threshold,
                        ":tier": claim.tier,
                        ":partner_id": claim.partner_id,
                        ":utilisation": _decimal(claim.utilisation),
                        ":until": until,
                        ":expires_at": claim.expires_at,
                        ":now": int(now),
                    }
                ),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held = _plain(dict(exc.response.get("Item", {})))  # type: ignore[call-overload]
            return ClaimResult(state=None, already_sent="sent_at" in held)
        old = _plain(answer.get("Attributes") or {})
        partner_email = old.get("partner_email")
        return ClaimResult(
            state=AlertState(
                claim=claim,
                claimed_until=until,
                operator_sent="operator_sent_at" in old,
                partner_email=str(partner_email) if partner_email else None,
            )
        )

    def record_alerts(self, states: list[AlertState], now: datetime) -> None:
        """Write what was delivered: each item as a whole (this run holds the claims, so nothing else writes
        them); `sent_at` only once every channel is done."""
        items = []
        for state in states:
            claim = state.claim
            values: dict[str, Any] = {
                "pk": key_pk(claim.api_key_id),
                "sk": alert_sk(claim.period_start, claim.threshold),
                "threshold": claim.threshold,
                "tier": claim.tier,
                "partner_id": claim.partner_id,
                "utilisation": _decimal(claim.utilisation),
                "claimed_until": state.claimed_until,
                "expires_at": claim.expires_at,
                "operator_sent_at": now.isoformat() if state.operator_sent else None,
                "partner_email": state.partner_email,
                "sent_at": now.isoformat() if state.done else None,
            }
            items.append(_item(values))
        for chunk in _chunks(items, BATCH_WRITE_SIZE):
            self._batch_write([{"PutRequest": {"Item": item}} for item in chunk])

    def release_alert(self, state: AlertState) -> None:
        """Give up a claim nothing was delivered for, so the next run tries again at once."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=self._alert_key(state.claim),
                ConditionExpression="claimed_until = :mine AND attribute_not_exists(operator_sent_at)",
                ExpressionAttributeValues=_item({":mine": state.claimed_until}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    # --- Batches ----------------------------------------------------------------------------------------

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self._table: {"Keys": keys}}
        for attempt in range(BATCH_ATTEMPTS):
            answer = self._client.batch_get_item(RequestItems=request)
            items += answer.get("Responses", {}).get(self._table, [])
            request = dict(answer.get("UnprocessedKeys") or {})
            if not request:
                return items
            if attempt + 1 < BATCH_ATTEMPTS:
                self._sleep(0.05 * 2**attempt)
        raise RuntimeError(f"DynamoDB left {len(request[self._table]['Keys'])} keys unprocessed")

    def _batch_write(self, writes: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {self._table: writes}
        for attempt in range(BATCH_ATTEMPTS):
            answer = self._client.batch_write_item(RequestItems=request)
            request = dict(answer.get("UnprocessedItems") or {})
            if not request:
                return
            if attempt + 1 < BATCH_ATTEMPTS:
                self._sleep(0.05 * 2**attempt)
        raise RuntimeError(f"DynamoDB left {len(request[self._table])} writes unprocessed")

    def _alert_key(self, claim: AlertClaim) -> dict[str, Any]:
        return _item({"pk": key_pk(claim.api_key_id), "sk": alert_sk(claim.period_start, claim.threshold)})


def _decimal(value: float) -> Decimal:
    # DynamoDB numbers go through Decimal; one decimal place is what the alert shows.
    return Decimal(str(round(value, 1)))


def _tokens(item: dict[str, Any]) -> TokenCounters:
    partner_id = item.get("partner_id")
    return TokenCounters(
        prompt_tokens=int(item.get("prompt_tokens", 0)),
        completion_tokens=int(item.get("completion_tokens", 0)),
        partner_id=str(partner_id) if partner_id else None,
    )


def _reading(api_key_id: str, period_start: datetime, item: dict[str, Any]) -> KeyQuotaReading | None:
    try:
        return KeyQuotaReading(
            api_key_id=api_key_id,
            period_start=period_start,
            tier=str(item["tier"]),
            used=int(item["used"]),
            remaining=int(item["remaining"]),
            limit=int(item["limit"]),
            as_of=str(item["as_of"]),
            requests=int(item.get("requests", 0)),
            tokens_used=int(item["tokens_used"]) if item.get("tokens_used") is not None else None,
            alerted_threshold=int(item["alerted_threshold"]) if item.get("alerted_threshold") is not None else None,
            expires_at=int(item.get("expires_at", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None  # not a reading this version understands: it will be rewritten
