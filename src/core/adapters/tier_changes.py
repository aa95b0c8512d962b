"""DynamoDB adapter: a partner record's tier-change state and lock (the kernel's TierChangeLock port), shared by
the billing webhook (core.billing.adapters.partners extends it) and the operator console's tier change. The
keys: core.adapters.partners_table."""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import PartnersTable, condition_failed, from_item, partner_pk, to_item
from core.errors import TierChangeInProgress
from core.models import Partner, PartnerStatus, PendingTierChange, TierChangeState


class TierChangeRecords(PartnersTable):
    """The TierChangeLock port on DynamoDB."""

    def get_with_state(self, partner_id: str) -> tuple[Partner, TierChangeState] | None:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": partner_pk(partner_id)}), ConsistentRead=True
        )
        if "Item" not in found:
            return None
        item = from_item(found["Item"])
        return Partner.model_validate(item), TierChangeState.model_validate(item)

    def begin_tier_change(
        self, partner_id: str, change: PendingTierChange, seen: TierChangeState, seen_status: PartnerStatus, now: float
    ) -> None:
        """Take the partner's change lock, if nothing moved since `seen` and `seen_status` were read (or its
        holder's lease expired). The status too: an operator who suspended the partner since must not be undone."""
        conditions = ["attribute_exists(pk)", "#status = :seen_status"]
        values: dict[str, Any] = {":change": change.model_dump(mode="json"), ":seen_status": seen_status.value}
        if seen.tier_event_at is None:
            conditions.append("attribute_not_exists(tier_event_at)")
        else:
            conditions.append("tier_event_at = :seen_at AND tier_event_id = :seen_id")
            values.update({":seen_at": seen.tier_event_at, ":seen_id": seen.tier_event_id})
        if seen.tier_change is None:
            conditions.append("attribute_not_exists(tier_change)")
        else:
            conditions.append(
                "tier_change.event_id = :seen_event AND tier_change.lease_until = :seen_lease "
                "AND tier_change.lease_until < :now"
            )
            values.update(
                {
                    ":seen_event": seen.tier_change.event_id,
                    ":seen_lease": seen.tier_change.lease_until,
                    ":now": int(now),
                }
            )
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_change = :change",
                ConditionExpression=" AND ".join(f"({condition})" for condition in conditions),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            # Another change for this partner got there first: the sender's retry will see its result.
            raise TierChangeInProgress(retry_after_seconds=5) from exc

    def release_tier_change(self, partner_id: str, event_id: str) -> None:
        """Let the next attempt take the lock at once; the journal (usage to carry) stays for it to finish."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_change.lease_until = :expired",
                ConditionExpression="tier_change.event_id = :event_id",
                ExpressionAttributeValues=to_item({":expired": 0, ":event_id": event_id}),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def finish_tier_change(
        self,
        partner_id: str,
        *,
        event_id: str,
        occurred_at_us: int,
        tier: str,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        previous_tier: str,
        notified: bool,
    ) -> None:
        """Record the applied change (its event time and id) and the partner's new tier and status (or, while an
        operator holds the partner, the status to restore), and drop the lock, in one write."""
        held = "held_status = :held, " if held_status else ""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression=(
                    f"SET {held}tier = :tier, #status = :status, tier_event_at = :at, tier_event_id = :event_id, "
                    "tier_event_previous_tier = :previous_tier, tier_event_notified = :notified, "
                    "updated_at = :updated_at REMOVE tier_change" + ("" if held_status else ", held_status")
                ),
                ConditionExpression="tier_change.event_id = :event_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":tier": tier,
                        ":status": status.value,
                        ":at": occurred_at_us,
                        ":event_id": event_id,
                        ":previous_tier": previous_tier,
                        ":notified": notified,
                        ":updated_at": updated_at,
                        **({":held": held_status.value} if held_status else {}),
                    }
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            raise TierChangeInProgress(retry_after_seconds=5) from exc
