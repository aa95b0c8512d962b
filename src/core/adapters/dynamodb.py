"""DynamoDB adapter: the partners table (partner records and the per-email uniqueness lock).

Three kinds of item share the table (see docs/CONTRACTS.md): `EMAIL#<email>` locks an address while its
signup runs and after it succeeds; `PARTNER#<id>` is the partner record, written only once the partner's
key is in its plan; `APIKEY#<key id>` finds the partner of a key. None ever holds an API key value.
"""

from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.aws import dynamodb_client
from core.errors import EmailAlreadyRegistered, SignupInProgress
from core.models import Partner, PartnerStatus, Reservation

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


def _failed_condition(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class PartnersTable:
    """The PartnerStore port on DynamoDB."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()

    def reserve_email(self, email: str, partner_id: str, now: float, lease_seconds: int) -> Reservation:
        """Lock `email` for a new signup, or take over a pending one whose holder is gone."""
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
            return Reservation(partner_id=partner_id, resumed=False)
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
        return Reservation(partner_id=str(existing["partner_id"]), resumed=True)

    def activate(self, partner: Partner) -> None:
        """Write the partner record, its key-id index entry, and mark its email taken, in one transaction."""
        self._client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _item({"pk": email_pk(partner.email)}),
                        "UpdateExpression": "SET #status = :active REMOVE lease_until",
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
