"""DynamoDB adapter: the billing webhook's items in the partners table (the TierChangeStore port): billing
customers, events for partners not known yet, and (through the kernel's TierChangeRecords) the tier-change state
and lock on the partner record. The keys: core.adapters.partners_table."""

from botocore.exceptions import ClientError

from core.adapters.partners_table import condition_failed, customer_pk, from_item, partner_pk, to_item, unmatched_pk
from core.adapters.tier_changes import TierChangeRecords
from core.billing.models import BillingEvent, UnmatchedSighting
from core.observability import logger


class BillingPartners(TierChangeRecords):
    """The TierChangeStore port on DynamoDB (the tier-change lock is the kernel's TierChangeRecords)."""

    def partner_for_customer(self, customer_id: str) -> str | None:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": customer_pk(customer_id)}), ConsistentRead=True
        )
        return str(from_item(found["Item"])["partner_id"]) if "Item" in found else None

    def link_customer(self, customer_id: str, partner_id: str) -> None:
        """Remember which partner a billing customer is; the first link wins (a later one is logged, not applied)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_item({"pk": customer_pk(customer_id), "partner_id": partner_id}),
                ConditionExpression="attribute_not_exists(pk) OR partner_id = :partner_id",
                ExpressionAttributeValues=to_item({":partner_id": partner_id}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            linked = from_item(dict(exc.response.get("Item", {})))  # type: ignore[call-overload]
            logger.warning(
                "billing customer already linked to another partner",
                customer_id=customer_id,
                partner_id=partner_id,
                linked_partner_id=linked.get("partner_id"),
            )

    def mark_notified(self, partner_id: str, event_id: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_event_notified = :true",
                ConditionExpression="tier_event_id = :event_id",
                ExpressionAttributeValues=to_item({":true": True, ":event_id": event_id}),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def record_unmatched(self, event: BillingEvent, now: float) -> UnmatchedSighting:
        """Record (or count again) an event whose partner we do not know; kept until it is applied or removed."""
        recorded = self._client.update_item(
            TableName=self._table,
            Key=to_item({"pk": unmatched_pk(event.scheme, event.event_id)}),
            UpdateExpression=(
                "SET first_seen_at = if_not_exists(first_seen_at, :now), last_seen_at = :now, #event = :event "
                "ADD deliveries :one"
            ),
            ExpressionAttributeNames={"#event": "event"},
            ExpressionAttributeValues=to_item(
                {":now": int(now), ":event": event.model_dump(mode="json", exclude_none=True), ":one": 1}
            ),
            ReturnValues="ALL_NEW",
        )
        attributes = from_item(recorded["Attributes"])
        return UnmatchedSighting(
            first_seen_at=int(attributes["first_seen_at"]), deliveries=int(attributes["deliveries"])
        )

    def forget_unmatched(self, event: BillingEvent) -> None:
        self._client.delete_item(TableName=self._table, Key=to_item({"pk": unmatched_pk(event.scheme, event.event_id)}))
