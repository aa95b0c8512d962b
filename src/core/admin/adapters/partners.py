"""The partners table as the operator console reads it: partner records, found by id or browsed in pages."""

from typing import Any

from botocore.exceptions import ClientError

from core.adapters.partners_table import (
    PARTNER_PREFIX,
    PartnerRecords,
    condition_failed,
    from_item,
    partner_pk,
    to_item,
)
from core.admin.models import PartnerFilter
from core.errors import TierChangeInProgress
from core.models import Partner, PartnerStatus

# Items a Scan page reads (before the filter): a page of partners usually needs one or two calls.
SCAN_PAGE_ITEMS = 500


class AdminPartners(PartnerRecords):
    """Partner records by id (PartnerRecords.get) and in pages (a filtered Scan; the table has no index)."""

    def page(self, filters: PartnerFilter, limit: int, after: str | None) -> tuple[list[Partner], str | None]:
        expression, names, values = _filter_expression(filters)
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item(values),
            "Limit": SCAN_PAGE_ITEMS,
        }
        if after is not None:
            # Scan resumes after any key of the table: the last partner the previous page returned.
            request["ExclusiveStartKey"] = to_item({"pk": partner_pk(after)})
        found: list[Partner] = []
        while True:
            answer = self._client.scan(**request)
            for item in answer.get("Items", []):
                found.append(Partner.model_validate(from_item(item)))
                if len(found) == limit:
                    return found, found[-1].partner_id
            if "LastEvaluatedKey" not in answer:
                return found, None
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def set_status(
        self,
        partner_id: str,
        *,
        seen: PartnerStatus,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        now: float,
    ) -> None:
        held = ", held_status = :held" if held_status else ""
        values: dict[str, Any] = {":seen": seen.value, ":status": status.value, ":at": updated_at, ":now": int(now)}
        if held_status:
            values[":held"] = held_status.value
        try:
            self._client.update_item(
                TableName=self._table,
                Key=to_item({"pk": partner_pk(partner_id)}),
                UpdateExpression=f"SET #status = :status, updated_at = :at{held}"
                + ("" if held else " REMOVE held_status"),
                # The billing webhook's change lock: a change in flight finishes first (it planned from `seen`).
                ConditionExpression=(
                    "#status = :seen AND (attribute_not_exists(tier_change) OR tier_change.lease_until < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            raise TierChangeInProgress(retry_after_seconds=5) from exc


def _filter_expression(filters: PartnerFilter) -> tuple[str, dict[str, str], dict[str, Any]]:
    clauses = ["begins_with(#pk, :prefix)"]
    names = {"#pk": "pk"}
    values: dict[str, Any] = {":prefix": PARTNER_PREFIX}
    for field, value in (("tier", filters.tier), ("status", filters.status), ("email", filters.email)):
        if value is not None:
            clauses.append(f"#{field} = :{field}")
            names[f"#{field}"] = field
            values[f":{field}"] = str(value)
    return " AND ".join(clauses), names, values
