"""The operator console's service: browse partners, and change them with an audit trail.

Every change goes through `AdminService.act`, which makes the record before the change and finishes it after:
1. the partner must exist (404 otherwise);
2. an audit entry (who: the caller's IAM principal ARN; what; when; the reason given) is written with
   outcome `started`, before anything changes, so no change can happen unrecorded;
3. the change runs; a refusal (a domain error) or a failure finishes the entry `refused` / `failed` and is raised;
4. the change is published to the operators' topic with `kind=operator-action`, and the entry is finished
   `applied` (with `notified` false when the publish failed: the change is done, the answer says so).

To add an operation: a method that calls `self.act(operator, partner_id, "<action>", reason, change)` where
`change(partner)` does the work and returns the partner after it and the details to record.
"""

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from core.adapters.sns import AlertTopic
from core.admin.adapters.audit_trail import AuditTrail
from core.admin.adapters.partners import AdminPartners
from core.admin.models import (
    PARTNER_ID,
    ActionResult,
    AuditEntry,
    Operator,
    PartnerDetail,
    PartnerFilter,
    PartnerPage,
    PartnerQuery,
    PartnerSummary,
)
from core.admin.ports import AuditLog, Notifier, PartnerIndex
from core.admin.settings import AdminSettings
from core.errors import DomainError, InvalidRequest, PartnerNotFound
from core.models import Partner
from core.observability import logger
from core.settings import load_settings

NOTIFICATION_KIND = "operator-action"
# A change's work: the partner after it, and what to record about it (ints and strings).
Change = Callable[[Partner], tuple[Partner, dict[str, Any]]]


class AdminService:
    def __init__(
        self,
        settings: AdminSettings,
        *,
        partners: PartnerIndex,
        audit: AuditLog,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._partners = partners
        self._audit = audit
        self._notifier = notifier
        self._clock = clock

    # --- Reading ----------------------------------------------------------------------------------------------

    def list_partners(self, query: PartnerQuery) -> PartnerPage:
        filters = query.filters
        after = read_page_token(query.next, filters) if query.next else None
        partners, last = self._partners.page(filters, query.limit, after)
        token = page_token(last, filters) if last else None
        return PartnerPage(partners=[PartnerSummary.of(partner) for partner in partners], next=token)

    def show_partner(self, partner_id: str) -> PartnerDetail:
        partner = self.partner(partner_id)
        trail = self._audit.trail(partner.partner_id, self._settings.audit_trail_length)
        return PartnerDetail(partner=PartnerSummary.of(partner), audit=trail)

    def partner(self, partner_id: str) -> Partner:
        """The partner, or PartnerNotFound (404) for an id that is malformed or nobody's."""
        partner = self._partners.get(partner_id) if PARTNER_ID.fullmatch(partner_id) else None
        if partner is None:
            raise PartnerNotFound(partner_id if PARTNER_ID.fullmatch(partner_id) else "that id")
        return partner

    # --- Changing ---------------------------------------------------------------------------------------------

    def act(self, operator: Operator, partner_id: str, action: str, reason: str, change: Change) -> ActionResult:
        """Run `change` on the partner, recorded in its audit trail and published (the module's docstring)."""
        partner = self.partner(partner_id)
        entry = self._audit.begin(
            AuditEntry(
                partner_id=partner.partner_id,
                seq=0,
                at=datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds"),
                actor=operator.arn,
                action=action,
                reason=reason,
                request_id=operator.request_id,
            )
        )
        try:
            after, details = change(partner)
        except DomainError as exc:
            self._finish_quietly(entry, "refused", {"error": type(exc).__name__})
            raise
        except Exception as exc:
            self._finish_quietly(entry, "failed", {"error": type(exc).__name__})
            raise
        notified = self._publish(entry, after, details)
        self._audit.finish(partner.partner_id, entry.seq, "applied", details, notified)
        logger.info(
            "operator action applied",
            partner_id=partner.partner_id,
            action=action,
            actor=operator.arn,
            seq=entry.seq,
            notified=notified,
        )
        done = entry.model_copy(update={"outcome": "applied", "details": details, "notified": notified})
        return ActionResult(partner=PartnerSummary.of(after), audit=done)

    def _publish(self, entry: AuditEntry, partner: Partner, details: dict[str, Any]) -> bool:
        message = {
            "kind": NOTIFICATION_KIND,
            "action": entry.action,
            "partner_id": partner.partner_id,
            "partner_name": partner.name,
            "actor": entry.actor,
            "reason": entry.reason,
            "at": entry.at,
            "seq": entry.seq,
            "details": details,
        }
        attributes = {"kind": NOTIFICATION_KIND, "action": entry.action, "partner_id": partner.partner_id}
        try:
            self._notifier.publish(f"Operator action: {entry.action} {partner.partner_id}", message, attributes)
        except Exception:
            # The change is done and recorded; the entry says the notification is missing.
            logger.exception("could not publish an operator action", partner_id=partner.partner_id, seq=entry.seq)
            return False
        return True

    def _finish_quietly(self, entry: AuditEntry, outcome: str, details: dict[str, Any]) -> None:
        try:
            self._audit.finish(entry.partner_id, entry.seq, outcome, details, notified=False)
        except Exception:
            # The entry stays `started`: the trail shows an attempt whose end is unknown, never a silent change.
            logger.exception("could not finish an audit entry", partner_id=entry.partner_id, seq=entry.seq)


# --- The `next` token of GET /admin/partners ----------------------------------------------------------------


def _fingerprint(filters: PartnerFilter) -> str:
    return hashlib.sha256(filters.model_dump_json().encode()).hexdigest()[:16]


def page_token(after: str, filters: PartnerFilter) -> str:
    """Opaque to callers: where the next page starts, bound to the filters it was made for."""
    raw = json.dumps({"after": after, "filters": _fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_page_token(token: str, filters: PartnerFilter) -> str:
    """The partner id a `next` token starts after; InvalidRequest (400) for anything this service did not make
    for these filters."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        decoded = None
    valid = (
        isinstance(decoded, dict)
        and set(decoded) == {"after", "filters"}
        and isinstance(decoded["after"], str)
        and PARTNER_ID.fullmatch(decoded["after"]) is not None
        and decoded["filters"] == _fingerprint(filters)
    )
    if not valid:
        raise InvalidRequest(
            "the next token is not one this API gave for these filters",
            [{"field": "next", "message": "invalid; start again without it"}],
        )
    return str(decoded["after"])


@cache
def admin_service() -> AdminService:
    settings = load_settings(AdminSettings)
    return AdminService(
        settings,
        partners=AdminPartners(settings.partners_table),
        audit=AuditTrail(settings.partners_table),
        notifier=AlertTopic(settings.alert_topic_arn),
    )
