"""The partners table's side of a key rotation (core.key_rotation's RetiredKeys port): `RETIRE#<key id>` items,
keys to delete once due, and the transaction that points a partner record at its new key."""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    RETIRE_PREFIX,
    PartnersTable,
    api_key_pk,
    condition_failed,
    from_item,
    partner_pk,
    retire_pk,
    to_item,
)
from core.errors import TierChangeInProgress
from core.key_rotation import CONFLICT_RETRY_SECONDS, Retirement
from core.models import Partner


def _retirement_item(retirement: Retirement) -> dict[str, Any]:
    return to_item(
        {
            "pk": retire_pk(retirement.api_key_id),
            "partner_id": retirement.partner_id,
            "due_at": retirement.due_at,
            "reason": retirement.reason,
        }
    )


class RetiredKeyRecords(PartnersTable):
    """The RetiredKeys port on the partners table."""

    def retire_later(self, retirement: Retirement) -> None:
        self._client.put_item(TableName=self._table, Item=_retirement_item(retirement))

    def switch_key(self, before: Partner, after: Partner, retire_old: Retirement | None, now: float) -> None:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": partner_pk(before.partner_id)}),
            "UpdateExpression": "SET api_key_id = :new_key, key_prefix = :prefix, #status = :status, "
            "updated_at = :at REMOVE held_status",
            # Another rotation, an operator's status change or a billing change since the read: it wins.
            "ConditionExpression": "api_key_id = :old_key AND #status = :seen AND tier = :tier "
            "AND (attribute_not_exists(tier_change) OR tier_change.lease_until < :now)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {
                    ":new_key": after.api_key_id,
                    ":prefix": after.key_prefix,
                    ":status": after.status.value,
                    ":at": after.updated_at,
                    ":old_key": before.api_key_id,
                    ":seen": before.status.value,
                    ":tier": before.tier,
                    ":now": int(now),
                }
            ),
        }
        items: list[dict[str, Any]] = [
            {"Update": update},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item({"pk": api_key_pk(after.api_key_id), "partner_id": after.partner_id}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Delete": {"TableName": self._table, "Key": to_item({"pk": retire_pk(after.api_key_id)})}},
        ]
        if retire_old is not None:
            items.append({"Put": {"TableName": self._table, "Item": _retirement_item(retire_old)}})
        try:
            self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException" and any(
                reason.get("Code") == "ConditionalCheckFailed" for reason in reasons
            ):
                raise TierChangeInProgress(retry_after_seconds=CONFLICT_RETRY_SECONDS) from exc
            raise

    def drop_retirement(self, retirement: Retirement) -> None:
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_item({"pk": retire_pk(retirement.api_key_id)}),
                ConditionExpression="attribute_not_exists(pk) OR due_at = :due",
                ExpressionAttributeValues=to_item({":due": retirement.due_at}),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def due_retirements(self, now: float) -> list[Retirement]:
        """Every retirement due by `now` (a filtered Scan: the table has no index, and these are few)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :prefix) AND due_at <= :now",
            "ExpressionAttributeValues": to_item({":prefix": RETIRE_PREFIX, ":now": int(now)}),
            "ConsistentRead": True,
        }
        found: list[Retirement] = []
        while True:
            page = self._client.scan(**request)
            for raw in page.get("Items", []):
                item = from_item(raw)
                found.append(
                    Retirement(
                        api_key_id=str(item["pk"]).removeprefix(RETIRE_PREFIX),
                        partner_id=str(item.get("partner_id", "")),
                        due_at=int(item["due_at"]),
                        reason=str(item.get("reason", "")),
                    )
                )
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda retirement: retirement.due_at)
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
