"""The partners table as the portal's key recovery uses it (docs/CONTRACTS.md): the email lock and partner
record (read), `RECOVER#<sha-256 of the link's token>` (a link, one use, TTL `expires_at`) and
`RECOVERLIMIT#<email|source>#<sha-256 of the value>#<hour>` (a counter per hour, TTL `expires_at`)."""

import hashlib
from typing import Literal

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    PartnerRecords,
    condition_failed,
    email_pk,
    from_item,
    recovery_limit_pk,
    recovery_link_pk,
    to_item,
)
from core.mailbox import mailbox_of
from core.models import Partner
from core.portal.ports import ClaimedLink

HOUR = 3600


class RecoveryTable(PartnerRecords):
    """The RecoveryRecords port on the partners table."""

    def partner_by_email(self, email: str) -> Partner | None:
        # As written, or (signup's OneKeyPerMailbox) as the mailbox it delivers to: the link goes to the address
        # the partner registered, which is that same mailbox.
        for address in dict.fromkeys([email, mailbox_of(email, one_key_per_mailbox=True)]):
            found = self._client.get_item(
                TableName=self._table, Key=to_item({"pk": email_pk(address)}), ConsistentRead=True
            )
            lock = from_item(found.get("Item") or {})
            if lock.get("status") == "ACTIVE" and "partner_id" in lock:  # not nobody, nor a signup still running
                return self.get(str(lock["partner_id"]))
        return None

    def partner(self, partner_id: str) -> Partner | None:
        return self.get(partner_id)

    def count_request(self, kind: Literal["email", "source"], value: str, now: float, limit: int) -> bool:
        hour = int(now) // HOUR * HOUR
        digest = hashlib.sha256(value.encode()).hexdigest()
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": recovery_limit_pk(kind, digest, hour)}),
                UpdateExpression="ADD requests :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
                ExpressionAttributeValues=to_item({":one": 1, ":limit": limit, ":expires": hour + 2 * HOUR}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def add_link(self, token_hash: str, partner_id: str, expires_at: int) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_item({"pk": recovery_link_pk(token_hash), "partner_id": partner_id, "expires_at": expires_at}),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def claim_link(self, token_hash: str, now: float) -> ClaimedLink | None:
        try:
            found = self._client.delete_item(
                TableName=self._table,
                Key=to_item({"pk": recovery_link_pk(token_hash)}),
                ConditionExpression="attribute_exists(pk) AND expires_at > :now",
                ExpressionAttributeValues=to_item({":now": int(now)}),
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        link = from_item(found.get("Attributes") or {})
        if not link.get("partner_id"):
            return None
        return ClaimedLink(str(link["partner_id"]), int(link.get("expires_at") or 0))
