"""A partner's audit trail (the operator console's actions, the portal's key recoveries) in the partners table
(docs/CONTRACTS.md, `AUDIT#` items).

The table has a partition key only, so a partner's trail is a head item (`AUDIT#<id>`, `entries`: how many)
and one item per entry (`AUDIT#<id>#<seq>`). An entry and the head's new count are written in one transaction
conditional on the count read, so two operators acting at once get consecutive numbers and neither entry is
lost; reading the trail is one GetItem and one BatchGetItem of the last entries.
"""

from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    PartnerRecords,
    audit_entry_pk,
    audit_head_pk,
    from_item,
    to_item,
)
from core.models import AuditEntry

# Concurrent actions on one partner are rare (people act); each conflict costs one more round.
MAX_ATTEMPTS = 8


class AuditTrailBusy(RuntimeError):
    """Other actions on the same partner kept taking the next number."""


class AuditTrail(PartnerRecords):
    def begin(self, entry: AuditEntry) -> AuditEntry:
        for _ in range(MAX_ATTEMPTS):
            seen = self._count(entry.partner_id)
            numbered = entry.model_copy(update={"seq": seen + 1})
            try:
                self._client.transact_write_items(TransactItems=self._append(numbered, seen))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                continue
            return numbered
        raise AuditTrailBusy(f"could not number an audit entry for {entry.partner_id}")

    def _append(self, entry: AuditEntry, seen: int) -> list[Any]:
        head = to_item({"pk": audit_head_pk(entry.partner_id)})
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": head,
                    "UpdateExpression": "SET entries = :next, partner_id = :partner",
                    "ConditionExpression": "attribute_not_exists(pk) OR entries = :seen",
                    "ExpressionAttributeValues": to_item(
                        {":next": entry.seq, ":seen": seen, ":partner": entry.partner_id}
                    ),
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {"pk": audit_entry_pk(entry.partner_id, entry.seq), **entry.model_dump(exclude_none=True)}
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]

    def finish(self, partner_id: str, seq: int, outcome: str, details: dict[str, Any], notified: bool) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=to_item({"pk": audit_entry_pk(partner_id, seq)}),
            UpdateExpression="SET outcome = :outcome, details = :details, notified = :notified",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({":outcome": outcome, ":details": details, ":notified": notified}),
        )

    def trail(self, partner_id: str, limit: int) -> list[AuditEntry]:
        count = self._count(partner_id)
        keys = [{"pk": audit_entry_pk(partner_id, seq)} for seq in range(count, max(0, count - limit), -1)]
        items = self._batch_get(keys)
        entries = [AuditEntry.model_validate(_plain({k: v for k, v in item.items() if k != "pk"})) for item in items]
        return sorted(entries, key=lambda entry: entry.seq, reverse=True)

    def _count(self, partner_id: str) -> int:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": audit_head_pk(partner_id)}), ConsistentRead=True
        )
        return int(from_item(found["Item"]).get("entries", 0)) if "Item" in found else 0


def _plain(value: Any) -> Any:
    """DynamoDB's numbers (Decimal) as the ints they were written as, so entries serialise as JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list | set):
        return [_plain(item) for item in value]
    return value
