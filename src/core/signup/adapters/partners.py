"""DynamoDB adapter: signup's items in the partners table (the PartnerStore port): the email lock, the partner
record and its key index, confirmation links and double opt-in requests. The keys: core.adapters.partners_table."""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    EMAIL_PREFIX,
    PartnersTable,
    api_key_pk,
    condition_failed,
    confirmation_pk,
    email_pk,
    from_item,
    opt_in_pk,
    partner_pk,
    to_item,
)
from core.errors import EmailAlreadyRegistered, SignupInProgress
from core.models import Partner, PartnerStatus
from core.signup.models import PendingLock, Reservation


class SignupPartners(PartnersTable):
    """The PartnerStore port on DynamoDB."""

    def reserve_email(self, email: str, partner_id: str, now: float, lease_seconds: int) -> Reservation:
        """Lock `email` (the mailbox) for a new signup, or take over a pending one whose holder is gone; a
        takeover's reservation lists the keys the dead attempt created."""
        lease_until = int(now) + lease_seconds
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_item(
                    {
                        "pk": email_pk(email),
                        "partner_id": partner_id,
                        "status": PartnerStatus.PENDING.value,
                        "lease_until": lease_until,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Reservation(partner_id=partner_id, resumed=False, lease_until=lease_until)
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            existing = from_item(dict(exc.response.get("Item", {})))  # type: ignore[call-overload]
        if existing.get("status") != PartnerStatus.PENDING.value:
            raise EmailAlreadyRegistered()
        return self._take_over(email, existing, now, lease_until)

    def _take_over(self, email: str, existing: dict[str, Any], now: float, lease_until: int) -> Reservation:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": email_pk(email)}),
                UpdateExpression="SET lease_until = :lease_until",
                ConditionExpression="#status = :pending AND lease_until < :now",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":lease_until": lease_until, ":pending": PartnerStatus.PENDING.value, ":now": int(now)}
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            retry_after = max(1, int(existing.get("lease_until", now)) - int(now))
            raise SignupInProgress(retry_after) from exc
        return Reservation(
            partner_id=str(existing["partner_id"]),
            resumed=True,
            lease_until=lease_until,
            key_ids=tuple(sorted(existing.get("key_ids", ()))),
        )

    def record_key(self, email: str, reservation: Reservation, key_id: str) -> None:
        """Note on the lock a key this attempt created, before anything else can fail: cleanup (ours, a
        takeover's, the sweep's) then never needs to list the account's keys."""
        self._client.update_item(
            TableName=self._table,
            Key=to_item({"pk": email_pk(email)}),
            UpdateExpression="ADD key_ids :key",
            ConditionExpression="#status = :pending AND partner_id = :partner_id",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":key": {key_id},
                    ":pending": PartnerStatus.PENDING.value,
                    ":partner_id": reservation.partner_id,
                }
            ),
        )

    def forget_key(self, email: str, partner_id: str, key_id: str) -> None:
        """A recorded key is deleted: take it off the lock (a lock that changed hands is left alone)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": email_pk(email)}),
                UpdateExpression="DELETE key_ids :key",
                ConditionExpression="#status = :pending AND partner_id = :partner_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":key": {key_id}, ":pending": PartnerStatus.PENDING.value, ":partner_id": partner_id}
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise

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

    def activate(self, partner: Partner, mailbox: str | None = None) -> None:
        """Write the partner record, its key-id index entry, and mark its mailbox (default: its email) taken,
        in one transaction."""
        self._client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_item({"pk": email_pk(mailbox or partner.email)}),
                        "UpdateExpression": "SET #status = :active REMOVE lease_until, key_ids",
                        "ConditionExpression": "#status = :pending AND partner_id = :partner_id",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item(
                            {
                                ":active": PartnerStatus.ACTIVE.value,
                                ":pending": PartnerStatus.PENDING.value,
                                ":partner_id": partner.partner_id,
                            }
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"pk": partner_pk(partner.partner_id), **partner.model_dump(mode="json")}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"pk": api_key_pk(partner.api_key_id), "partner_id": partner.partner_id}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )

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

    def release(self, email: str, reservation: Reservation) -> None:
        """Drop a pending lock so the same signup can be tried again at once."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=to_item({"pk": email_pk(email)}),
                ConditionExpression="#status = :pending AND partner_id = :partner_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":pending": PartnerStatus.PENDING.value, ":partner_id": reservation.partner_id}
                ),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
