"""The metering table's side of a key rotation (core.key_rotation's LedgerCarry port): the old key's ledger item
for the period is read and the new key's is written with its standing (docs/CONTRACTS.md, "Metering table").
The item keys are core.adapters.metering_items'."""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from core.adapters.metering_items import CARRIED_REQUESTS, CARRIED_TOKENS, EXTENSION_ATTRIBUTES, key_pk, ledger_sk
from core.adapters.partners_table import condition_failed, from_item, to_item
from core.aws import dynamodb_client
from core.key_rotation import CarriedLedger
from core.models import Partner

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# As the AI API keeps its ledger items (core.ai.adapters.metering_table): the period's reset + 35 days.
LEDGER_RETENTION = timedelta(days=35)


class LedgerCarryTable:
    """The LedgerCarry port on the metering table."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def standing(self, api_key_id: str, period_start: datetime) -> CarriedLedger:
        found = self._client.get_item(
            TableName=self._table,
            Key=to_item({"pk": key_pk(api_key_id), "sk": ledger_sk(period_start)}),
            ConsistentRead=True,
        )
        item = from_item(found.get("Item") or {})
        return CarriedLedger(
            requests=int(item.get("requests", 0)),
            # committed_tokens counts what the key itself carried in; holds in flight count (they may settle).
            tokens=int(item.get("committed_tokens", 0)),
            extensions=tuple((name, int(item[name])) for name in EXTENSION_ATTRIBUTES if name in item),
        )

    def start(
        self,
        api_key_id: str,
        period_start: datetime,
        period_reset: datetime,
        partner: Partner,
        *,
        carried: CarriedLedger,
        carried_requests: int,
    ) -> None:
        item: dict[str, Any] = {
            "pk": key_pk(api_key_id),
            "sk": ledger_sk(period_start),
            CARRIED_TOKENS: carried.tokens,
            "committed_tokens": carried.tokens,
            CARRIED_REQUESTS: carried_requests,
            "tier": partner.tier,
            "partner_id": partner.partner_id,
            "expires_at": int((period_reset + LEDGER_RETENTION).timestamp()),
        } | dict(carried.extensions)
        try:
            # A new key's item: nobody else writes it before the partner record names the key.
            self._client.put_item(
                TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
