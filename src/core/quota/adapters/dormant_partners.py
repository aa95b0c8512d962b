"""DynamoDB adapter: the dormant-key sweep's marks on partner records (the DormantPartners port).

On `PARTNER#<id>` (docs/CONTRACTS.md) the sweep keeps `dormant_notice` (M: `api_key_id`, `claimed_until`, then
`sent_at` or `failed_at`): the claim of the deletion notice, taken before it is sent, so a notice goes out at
most once per key. Once sent, the same write makes the partner `DORMANT` (`dormant_at`); the key is deleted
after that. The key fields stay: they name the deleted key for an operator who re-issues one.
"""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import PartnersTable, condition_failed, from_item, partner_pk, to_item
from core.models import PartnerStatus
from core.quota.dormant import NoticeState


class DormantPartners(PartnersTable):
    """The DormantPartners port on the partners table."""

    def claim_notice(self, partner_id: str, api_key_id: str, tier: str, now: int, lease_seconds: int) -> NoticeState:
        """Claim the notice of an ACTIVE partner's key on `tier`; else say where it stands."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET dormant_notice = :claim",
                ConditionExpression=(
                    "#status = :active AND api_key_id = :key AND tier = :tier AND "
                    "(attribute_not_exists(dormant_notice) OR dormant_notice.api_key_id <> :key)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":claim": {"api_key_id": api_key_id, "claimed_until": now + lease_seconds},
                        ":active": PartnerStatus.ACTIVE.value,
                        ":key": api_key_id,
                        ":tier": tier,
                    }
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            return self._standing(partner_id, api_key_id, now)
        return NoticeState.CLAIMED

    def _standing(self, partner_id: str, api_key_id: str, now: int) -> NoticeState:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": partner_pk(partner_id)}), ConsistentRead=True
        )
        record: dict[str, Any] = from_item(found.get("Item") or {})
        notice = record.get("dormant_notice") or {}
        if notice.get("api_key_id") != api_key_id:
            return NoticeState.GONE
        if "sent_at" in notice:
            dormant = record.get("status") == PartnerStatus.DORMANT.value
            return NoticeState.SENT if dormant else NoticeState.GONE
        if "failed_at" in notice:
            return NoticeState.FAILED
        return NoticeState.BUSY if int(notice.get("claimed_until", 0)) >= now else NoticeState.UNKNOWN

    def mark_dormant(self, partner_id: str, api_key_id: str, now: str) -> None:
        """The notice went out: the partner is DORMANT (its key is deleted next)."""
        self._client.update_item(
            TableName=self._table,
            Key=to_item({"pk": partner_pk(partner_id)}),
            UpdateExpression=(
                "SET #status = :dormant, dormant_at = :now, updated_at = :now, dormant_notice.sent_at = :now"
            ),
            ConditionExpression="dormant_notice.api_key_id = :key AND #status = :active",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":dormant": PartnerStatus.DORMANT.value,
                    ":active": PartnerStatus.ACTIVE.value,
                    ":now": now,
                    ":key": api_key_id,
                }
            ),
        )

    def notice_failed(self, partner_id: str, api_key_id: str, now: str) -> None:
        """SES refused the notice for good: the key is kept, and the sweep does not try this key again."""
        self._client.update_item(
            TableName=self._table,
            Key=to_item({"pk": partner_pk(partner_id)}),
            UpdateExpression="SET dormant_notice.failed_at = :now",
            ConditionExpression="dormant_notice.api_key_id = :key",
            ExpressionAttributeValues=to_item({":now": now, ":key": api_key_id}),
        )

    def release_notice(self, partner_id: str, api_key_id: str) -> None:
        """The notice could not be sent this time (nothing went out): the next day's sweep claims it again."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="REMOVE dormant_notice",
                ConditionExpression="dormant_notice.api_key_id = :key AND attribute_not_exists(dormant_notice.sent_at)",
                ExpressionAttributeValues=to_item({":key": api_key_id}),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
