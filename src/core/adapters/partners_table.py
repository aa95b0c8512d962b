"""The partners table: its item layout, defined here only, and the reads of partner records two capabilities share.
Signup (core.signup.adapters.partners) and billing (core.billing.adapters.partners) each write their items
through their own adapter over these keys.

Three kinds of item share the table (see docs/CONTRACTS.md): `EMAIL#<mailbox>` locks an address while its
signup runs and after it succeeds (while it runs, it lists the ids of the keys the attempt created, so a
failed attempt's keys can always be found and deleted); `PARTNER#<id>` is the partner record, written only
once the partner's key is in its plan; `APIKEY#<key id>` finds the partner of a key. None ever holds an API key value.
The operator console adds its audit trail: `AUDIT#<partner id>` (the trail's head: how many entries) and
`AUDIT#<partner id>#<seq, 10 digits>` (one entry per operator action).
A key rotation (core.key_rotation) adds `RETIRE#<key id>`: a key the retired-key sweep deletes once due.
The billing webhook adds `CUSTOMER#<billing customer id>` (finds a partner from its billing customer),
`UNMATCHED#<scheme>#<event id>` (an event for a partner we do not know yet) and, on the partner record,
its billing state (the last applied event, and the lock of a change in progress).
"""

import time
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.aws import dynamodb_client
from core.models import Partner

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serialize = TypeSerializer().serialize
_deserialize = TypeDeserializer().deserialize


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serialize(value) for name, value in values.items()}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserialize(value) for name, value in item.items()}


EMAIL_PREFIX = "EMAIL#"
API_KEY_PREFIX = "APIKEY#"


def email_pk(email: str) -> str:
    return f"{EMAIL_PREFIX}{email}"


PARTNER_PREFIX = "PARTNER#"


def partner_pk(partner_id: str) -> str:
    return f"{PARTNER_PREFIX}{partner_id}"


def api_key_pk(api_key_id: str) -> str:
    return f"{API_KEY_PREFIX}{api_key_id}"


def customer_pk(customer_id: str) -> str:
    return f"CUSTOMER#{customer_id}"


def confirmation_pk(token_hash: str) -> str:
    return f"CONFIRM#{token_hash}"


def opt_in_pk(mailbox: str) -> str:
    return f"OPTIN#{mailbox}"


def unmatched_pk(scheme: str, event_id: str) -> str:
    return f"UNMATCHED#{scheme}#{event_id}"


AUDIT_PREFIX = "AUDIT#"


def audit_head_pk(partner_id: str) -> str:
    """The audit trail's head: `entries`, the number of entries the partner's trail holds."""
    return f"{AUDIT_PREFIX}{partner_id}"


def audit_entry_pk(partner_id: str, seq: int) -> str:
    """One entry of a partner's audit trail; `seq` counts from 1, zero-padded so keys sort in order."""
    return f"{AUDIT_PREFIX}{partner_id}#{seq:010d}"


RETIRE_PREFIX = "RETIRE#"


def retire_pk(api_key_id: str) -> str:
    """A key to delete once due (a rotated key after its grace, a new key whose rotation died): `partner_id`,
    `due_at` (epoch s), `reason` (docs/CONTRACTS.md)."""
    return f"{RETIRE_PREFIX}{api_key_id}"


def condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class PartnersTable:
    """One table, one client: the base of each capability's adapter over the partners table."""

    def __init__(self, table_name: str, client: "DynamoDBClient | None" = None) -> None:
        self._table = table_name
        self._client = client or dynamodb_client()


class PartnerRecords(PartnersTable):
    """Partner records, read: the AI API's PartnerLookup and the quota monitor's PartnerDirectory ports."""

    def get_by_api_key_id(self, api_key_id: str) -> Partner | None:
        found = self._client.get_item(TableName=self._table, Key=to_item({"pk": api_key_pk(api_key_id)}))
        if "Item" not in found:
            return None
        return self.get(str(from_item(found["Item"])["partner_id"]))

    def get(self, partner_id: str) -> Partner | None:
        found = self._client.get_item(
            TableName=self._table, Key=to_item({"pk": partner_pk(partner_id)}), ConsistentRead=True
        )
        if "Item" not in found:
            return None
        return Partner.model_validate(from_item(found["Item"]))

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]:
        """The partner of each key that has one, in BatchGetItem calls of 100 (key index, then records)."""
        index = self._batch_get([{"pk": api_key_pk(key_id)} for key_id in dict.fromkeys(api_key_ids)])
        partner_of = {str(item["pk"]).removeprefix(API_KEY_PREFIX): str(item["partner_id"]) for item in index}
        records = self._batch_get([{"pk": partner_pk(partner_id)} for partner_id in dict.fromkeys(partner_of.values())])
        partners = {str(item["partner_id"]): Partner.model_validate(item) for item in records}
        return {key_id: partners[pid] for key_id, pid in partner_of.items() if pid in partners}

    def _batch_get(self, keys: list[dict[str, Any]], attempts: int = 8) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": [to_item(key) for key in keys[start : start + 100]]}}
            for attempt in range(attempts):
                answer = self._client.batch_get_item(RequestItems=request)
                found += [from_item(item) for item in answer.get("Responses", {}).get(self._table, [])]
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    break
                # DynamoDB's advice for unprocessed keys: back off exponentially, then retry.
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"DynamoDB left keys of {self._table} unprocessed after {attempts} attempts")
        return found
