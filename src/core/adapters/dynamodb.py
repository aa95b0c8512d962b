"""DynamoDB adapter: the partners table (partner records and the per-email uniqueness lock).

Three kinds of item share the table (see docs/CONTRACTS.md): `EMAIL#<mailbox>` locks an address while its
signup runs and after it succeeds (while it runs, it lists the ids of the keys the attempt created, so a
failed attempt's keys can always be found and deleted); `PARTNER#<id>` is the partner record, written only
once the partner's key is in its plan; `APIKEY#<key id>` finds the partner of a key. None ever holds an API key value.
The billing webhook adds `CUSTOMER#<billing customer id>` (finds a partner from its billing customer),
`UNMATCHED#<scheme>#<event id>` (an event for a partner we do not know yet) and, on the partner record,
its billing state (the last applied event, and the lock of a change in progress).
"""

import time
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.aws import dynamodb_client
from core.errors import EmailAlreadyRegistered, SignupInProgress, TierChangeInProgress
from core.models import (
    BillingEvent,
    BillingState,
    Partner,
    PartnerStatus,
    PendingLock,
    PendingTierChange,
    Reservation,
    UnmatchedSighting,
)
from core.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserialize(value) for name, value in item.items()}


def email_pk(email: str) -> str:
    return f"EMAIL#{email}"


def partner_pk(partner_id: str) -> str:
    return f"PARTNER#{partner_id}"


def api_key_pk(api_key_id: str) -> str:
    return f"APIKEY#{api_key_id}"


def customer_pk(customer_id: str) -> str:
    return f"CUSTOMER#{customer_id}"


def confirmation_pk(token_hash: str) -> str:
    return f"CONFIRM#{token_hash}"


def opt_in_pk(mailbox: str) -> str:
    return f"OPTIN#{mailbox}"


def unmatched_pk(scheme: str, event_id: str) -> str:
    return f"UNMATCHED#{scheme}#{event_id}"


def _failed_condition(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class PartnersTable:
    """The PartnerStore port on DynamoDB."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def reserve_email(self, email: str, partner_id: str, now: float, lease_seconds: int) -> Reservation:
        """Lock `email` (the mailbox) for a new signup, or take over a pending one whose holder is gone; a
        takeover's reservation lists the keys the dead attempt created."""
        lease_until = int(now) + lease_seconds
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item(
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
            if not _failed_condition(exc):
                raise
            existing = _plain(dict(exc.response.get("Item", {})))  # type: ignore[call-overload]
        if existing.get("status") != PartnerStatus.PENDING.value:
            raise EmailAlreadyRegistered()
        return self._take_over(email, existing, now, lease_until)

    def _take_over(self, email: str, existing: dict[str, Any], now: float, lease_until: int) -> Reservation:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({"pk": email_pk(email)}),
                UpdateExpression="SET lease_until = :lease_until",
                ConditionExpression="#status = :pending AND lease_until < :now",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_item(
                    {":lease_until": lease_until, ":pending": PartnerStatus.PENDING.value, ":now": int(now)}
                ),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
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
            Key=_item({"pk": email_pk(email)}),
            UpdateExpression="ADD key_ids :key",
            ConditionExpression="#status = :pending AND partner_id = :partner_id",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=_item(
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
                Key=_item({"pk": email_pk(email)}),
                UpdateExpression="DELETE key_ids :key",
                ConditionExpression="#status = :pending AND partner_id = :partner_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_item(
                    {":key": {key_id}, ":pending": PartnerStatus.PENDING.value, ":partner_id": partner_id}
                ),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def expired_locks(self, now: float) -> list[PendingLock]:
        """Pending email locks whose lease has run out: their signup died or gave up (the sweep's work)."""
        found: list[PendingLock] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :email) AND #status = :pending AND lease_until < :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": _item(
                {":email": "EMAIL#", ":pending": PartnerStatus.PENDING.value, ":now": int(now)}
            ),
            "ConsistentRead": True,
        }
        while True:
            page = self._client.scan(**request)
            for raw in page.get("Items", []):
                item = _plain(raw)
                found.append(
                    PendingLock(
                        email=str(item["pk"]).removeprefix("EMAIL#"),
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
                Key=_item({"pk": email_pk(lock.email)}),
                ConditionExpression="#status = :pending AND partner_id = :partner_id AND lease_until = :lease_until",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_item(
                    {
                        ":pending": PartnerStatus.PENDING.value,
                        ":partner_id": lock.partner_id,
                        ":lease_until": lock.lease_until,
                    }
                ),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
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
                        "Key": _item({"pk": email_pk(mailbox or partner.email)}),
                        "UpdateExpression": "SET #status = :active REMOVE lease_until, key_ids",
                        "ConditionExpression": "#status = :pending AND partner_id = :partner_id",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": _item(
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
                        "Item": _item({"pk": partner_pk(partner.partner_id), **partner.model_dump(mode="json")}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _item({"pk": api_key_pk(partner.api_key_id), "partner_id": partner.partner_id}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )

    def add_confirmation(self, token_hash: str, partner_id: str, expires_at: int) -> None:
        """A pending email confirmation, found by the hash of its link's token (never the token itself)."""
        self._client.put_item(
            TableName=self._table,
            Item=_item({"pk": confirmation_pk(token_hash), "partner_id": partner_id, "expires_at": expires_at}),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def confirm_email(self, token_hash: str, now: float) -> str | None:
        """Use a confirmation once: mark its partner's email confirmed and delete it, in one transaction; the
        partner id, or None if the token is unknown, used or expired."""
        found = self._client.get_item(
            TableName=self._table, Key=_item({"pk": confirmation_pk(token_hash)}), ConsistentRead=True
        )
        item = _plain(found.get("Item", {}))
        if "partner_id" not in item or int(item["expires_at"]) < int(now):
            return None
        partner_id = str(item["partner_id"])
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": _item({"pk": confirmation_pk(token_hash)}),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _item({"pk": partner_pk(partner_id)}),
                            "UpdateExpression": "SET email_confirmed = :true",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": _item({":true": True}),
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
        found = self._client.get_item(TableName=self._table, Key=_item({"pk": email_pk(mailbox)}), ConsistentRead=True)
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
                            "Item": _item({"pk": opt_in_pk(mailbox), "expires_at": expires_at}),
                            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                            "ExpressionAttributeValues": _item({":now": int(now)}),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _item(
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
            TableName=self._table, Key=_item({"pk": confirmation_pk(token_hash)}), ConsistentRead=True
        )
        item = _plain(found.get("Item", {}))
        if "request" not in item or int(item["expires_at"]) < int(now):
            return None
        request: dict[str, Any] = item["request"]
        return request

    def forget_signup_request(self, token_hash: str, mailbox: str) -> None:
        for pk in (confirmation_pk(token_hash), opt_in_pk(mailbox)):
            self._client.delete_item(TableName=self._table, Key=_item({"pk": pk}))

    def release(self, email: str, reservation: Reservation) -> None:
        """Drop a pending lock so the same signup can be tried again at once."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=_item({"pk": email_pk(email)}),
                ConditionExpression="#status = :pending AND partner_id = :partner_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_item(
                    {":pending": PartnerStatus.PENDING.value, ":partner_id": reservation.partner_id}
                ),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def get_by_api_key_id(self, api_key_id: str) -> Partner | None:
        found = self._client.get_item(TableName=self._table, Key=_item({"pk": api_key_pk(api_key_id)}))
        if "Item" not in found:
            return None
        return self.get(str(_plain(found["Item"])["partner_id"]))

    def get(self, partner_id: str) -> Partner | None:
        found = self._client.get_item(
            TableName=self._table, Key=_item({"pk": partner_pk(partner_id)}), ConsistentRead=True
        )
        if "Item" not in found:
            return None
        return Partner.model_validate(_plain(found["Item"]))

    # --- The quota monitor (the PartnerDirectory port) -------------------------------------------------------

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]:
        """The partner of each key that has one, in BatchGetItem calls of 100 (key index, then records)."""
        index = self._batch_get([{"pk": api_key_pk(key_id)} for key_id in dict.fromkeys(api_key_ids)])
        partner_of = {str(item["pk"]).removeprefix("APIKEY#"): str(item["partner_id"]) for item in index}
        records = self._batch_get([{"pk": partner_pk(partner_id)} for partner_id in dict.fromkeys(partner_of.values())])
        partners = {str(item["partner_id"]): Partner.model_validate(item) for item in records}
        return {key_id: partners[pid] for key_id, pid in partner_of.items() if pid in partners}

    def _batch_get(self, keys: list[dict[str, Any]], attempts: int = 8) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": [_item(key) for key in keys[start : start + 100]]}}
            for attempt in range(attempts):
                answer = self._client.batch_get_item(RequestItems=request)
                found += [_plain(item) for item in answer.get("Responses", {}).get(self._table, [])]
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    break
                # DynamoDB's advice for unprocessed keys: back off exponentially, then retry.
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"DynamoDB left keys of {self._table} unprocessed after {attempts} attempts")
        return found

    # --- The billing webhook (the TierChangeStore port) ----------------------------------------------------

    def get_with_billing(self, partner_id: str) -> tuple[Partner, BillingState] | None:
        found = self._client.get_item(
            TableName=self._table, Key=_item({"pk": partner_pk(partner_id)}), ConsistentRead=True
        )
        if "Item" not in found:
            return None
        item = _plain(found["Item"])
        return Partner.model_validate(item), BillingState.model_validate(item)

    def partner_for_customer(self, customer_id: str) -> str | None:
        found = self._client.get_item(
            TableName=self._table, Key=_item({"pk": customer_pk(customer_id)}), ConsistentRead=True
        )
        return str(_plain(found["Item"])["partner_id"]) if "Item" in found else None

    def link_customer(self, customer_id: str, partner_id: str) -> None:
        """Remember which partner a billing customer is; the first link wins (a later one is logged, not applied)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item({"pk": customer_pk(customer_id), "partner_id": partner_id}),
                ConditionExpression="attribute_not_exists(pk) OR partner_id = :partner_id",
                ExpressionAttributeValues=_item({":partner_id": partner_id}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            linked = _plain(dict(exc.response.get("Item", {})))  # type: ignore[call-overload]
            logger.warning(
                "billing customer already linked to another partner",
                customer_id=customer_id,
                partner_id=partner_id,
                linked_partner_id=linked.get("partner_id"),
            )

    def begin_tier_change(self, partner_id: str, change: PendingTierChange, seen: BillingState, now: float) -> None:
        """Take the partner's change lock, if nothing moved since `seen` was read (or its holder's lease expired)."""
        conditions = ["attribute_exists(pk)"]
        values: dict[str, Any] = {":change": change.model_dump(mode="json")}
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
                Key=_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_change = :change",
                ConditionExpression=" AND ".join(f"({condition})" for condition in conditions),
                ExpressionAttributeValues=_item(values),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            # Another event for this partner got there first: the sender's retry will see its result.
            raise TierChangeInProgress(retry_after_seconds=5) from exc

    def release_tier_change(self, partner_id: str, event_id: str) -> None:
        """Let the next attempt take the lock at once; the journal (usage to carry) stays for it to finish."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_change.lease_until = :expired",
                ConditionExpression="tier_change.event_id = :event_id",
                ExpressionAttributeValues=_item({":expired": 0, ":event_id": event_id}),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def finish_tier_change(
        self,
        partner_id: str,
        event: BillingEvent,
        *,
        tier: str,
        status: PartnerStatus,
        updated_at: str,
        previous_tier: str,
        notified: bool,
    ) -> None:
        """Record the applied event and the partner's new tier and status, and drop the lock, in one write."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({"pk": partner_pk(partner_id)}),
                UpdateExpression=(
                    "SET tier = :tier, #status = :status, tier_event_at = :at, tier_event_id = :event_id, "
                    "tier_event_previous_tier = :previous_tier, tier_event_notified = :notified, "
                    "updated_at = :updated_at REMOVE tier_change"
                ),
                ConditionExpression="tier_change.event_id = :event_id",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_item(
                    {
                        ":tier": tier,
                        ":status": status.value,
                        ":at": event.occurred_at_us,
                        ":event_id": event.event_id,
                        ":previous_tier": previous_tier,
                        ":notified": notified,
                        ":updated_at": updated_at,
                    }
                ),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise
            raise TierChangeInProgress(retry_after_seconds=5) from exc

    def mark_notified(self, partner_id: str, event_id: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({"pk": partner_pk(partner_id)}),
                UpdateExpression="SET tier_event_notified = :true",
                ConditionExpression="tier_event_id = :event_id",
                ExpressionAttributeValues=_item({":true": True, ":event_id": event_id}),
            )
        except ClientError as exc:
            if not _failed_condition(exc):
                raise

    def record_unmatched(self, event: BillingEvent, now: float) -> UnmatchedSighting:
        """Record (or count again) an event whose partner we do not know; kept until it is applied or removed."""
        recorded = self._client.update_item(
            TableName=self._table,
            Key=_item({"pk": unmatched_pk(event.scheme, event.event_id)}),
            UpdateExpression=(
                "SET first_seen_at = if_not_exists(first_seen_at, :now), last_seen_at = :now, #event = :event "
                "ADD deliveries :one"
            ),
            ExpressionAttributeNames={"#event": "event"},
            ExpressionAttributeValues=_item(
                {":now": int(now), ":event": event.model_dump(mode="json", exclude_none=True), ":one": 1}
            ),
            ReturnValues="ALL_NEW",
        )
        attributes = _plain(recorded["Attributes"])
        return UnmatchedSighting(
            first_seen_at=int(attributes["first_seen_at"]), deliveries=int(attributes["deliveries"])
        )

    def forget_unmatched(self, event: BillingEvent) -> None:
        self._client.delete_item(TableName=self._table, Key=_item({"pk": unmatched_pk(event.scheme, event.event_id)}))
