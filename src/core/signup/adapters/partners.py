"""DynamoDB adapter: signup's items in the partners table (the PartnerStore port): the email lock, the partner
record and its key index, confirmation links and double opt-in requests. The keys: core.adapters.partners_table."""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    EMAIL_PREFIX,
    PartnerEnrolment,
    condition_failed,
    confirmation_pk,
    email_pk,
    from_item,
    opt_in_pk,
    partner_pk,
    to_item,
)
from core.models import PartnerStatus
from core.signup.models import PendingLock


class SignupPartners(PartnerEnrolment):
    """The PartnerStore port on DynamoDB (the enrolment steps are the kernel's, shared with key import)."""

    def expired_locks(self, now: float) -> list[PendingLock]:
        """Pending email locks whose lease has run out: their signup died or gave up (the sweep's work)."""
        found: list[PendingLock] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :email) AND #status = :pending AND lease_until < :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {":email": EMAIL_PREFIX, ":pending": PartnerStatus.PENDING.value, ":now": int(now)}
            ),
            "ConsistentRead": True,
        }
        while True:
            page = self._client.scan(**request)
            for raw in page.get("Items", []):
                item = from_item(raw)
                found.append(
                    PendingLock(
                        email=str(item["pk"]).removeprefix(EMAIL_PREFIX),
                        partner_id=str(item["partner_id"]),
                        lease_until=int(item["lease_until"]),
                        key_ids=tuple(sorted(item.get("key_ids", ()))),
                    )
                )
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def drop_expired_lock(self, lock: PendingLock) -> bool:
        """Delete a lock the sweep cleaned up, unless a retry took it over meanwhile (its lease moved)."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_item({"pk": email_pk(lock.email)}),
                ConditionExpression="#status = :pending AND partner_id = :partner_id AND lease_until = :lease_until",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":pending": PartnerStatus.PENDING.value,
                        ":partner_id": lock.partner_id,
                        ":lease_until": lock.lease_until,
                    }
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def add_confirmation(self, token_hash: str, partner_id: str, expires_at: int) -> None:
        """A pending email confirmation, found by the hash of its link's token (never the token itself)."""
        self._client.put_item(
            TableName=self._table,
            Item=to_item({"pk": confirmation_pk(token_hash), "partner_id": partner_id, "expires_at": expires_at}),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def confirm_email(self, token_hash: str, now: float) -> str | None:
        """Use a confirmation once: mark its partner's email confirmed and delete it, in one transaction; the
        partner id, or None if the token is unknown, used or expired."""
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": confirmation_pk(token_hash)}), ConsistentRead=True
        )
        item = from_item(found.get("Item", {}))
        if "partner_id" not in item or int(item["expires_at"]) < int(now):
            return None
        partner_id = str(item["partner_id"])
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": to_item({"pk": confirmation_pk(token_hash)}),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": partner_pk(partner_id)}),
                            "UpdateExpression": "SET email_confirmed = :true",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": to_item({":true": True}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            return None  # used meanwhile (a double click), or the partner is gone
        return partner_id

    def is_registered(self, mailbox: str) -> bool:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": email_pk(mailbox)}), ConsistentRead=True
        )
        return "Item" in found

    def add_signup_request(
        self, token_hash: str, mailbox: str, request: dict[str, Any], now: float, expires_at: int
    ) -> bool:
        """Double opt-in: keep a signup request until its link is opened. False if a link for this mailbox is
        already pending (one email per mailbox and link lifetime, so nobody can make us mail an address twice)."""
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item({"pk": opt_in_pk(mailbox), "expires_at": expires_at}),
                            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                            "ExpressionAttributeValues": to_item({":now": int(now)}),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(
                                {"pk": confirmation_pk(token_hash), "request": request, "expires_at": expires_at}
                            ),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            return False
        return True

    def pending_signup(self, token_hash: str, now: float) -> dict[str, Any] | None:
        """The signup request a double opt-in link stands for, if the link is known and not expired."""
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": confirmation_pk(token_hash)}), ConsistentRead=True
        )
        item = from_item(found.get("Item", {}))
        if "request" not in item or int(item["expires_at"]) < int(now):
            return None
        request: dict[str, Any] = item["request"]
        return request

    def forget_signup_request(self, token_hash: str, mailbox: str) -> None:
        for pk in (confirmation_pk(token_hash), opt_in_pk(mailbox)):
            self._client.delete_item(TableName=self._table, Key=to_item({"pk": pk}))
