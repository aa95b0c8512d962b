"""The operator console's service: browse partners, and change them with an audit trail.

Every change goes through `AdminService.act`, which makes the record before the change and finishes it after:
1. the partner must exist (404 otherwise);
2. an audit entry (who: the caller's IAM principal ARN; what; when; the reason given) is written with
   outcome `started`, before anything changes, so no change can happen unrecorded;
3. the change runs; a refusal (a domain error) or a failure finishes the entry `refused` / `failed` and is raised;
4. the change is published to the operators' topic with `kind=operator-action`, and the entry is finished
   `applied` (with `notified` false when the publish failed: the change is done, the answer says so).

Tier changes are the billing webhook's (core.tier_changes): the same plan moves, the same per-partner order and lock.

To add an operation: a method that calls `self.act(operator, partner_id, "<action>", reason, change)` where
`change(partner)` does the work and returns the partner after it and the details to record.
"""

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from core.adapters.apigateway import ApiGateway
from core.adapters.audit_trail import AuditTrail
from core.adapters.ledger_requests import LedgerRequests
from core.adapters.partners_table import PartnerEnrolment
from core.adapters.sns import AlertTopic
from core.adapters.tier_changes import TierChangeRecords
from core.admin.adapters.export_bucket import ExportBucket
from core.admin.adapters.ledger import AdminLedger
from core.admin.adapters.ledger_items import LedgerScan
from core.admin.adapters.partners import AdminPartners
from core.admin.key_import import ImportReport, KeyImporter
from core.admin.models import (
    PARTNER_ID,
    ActionResult,
    KeyIssued,
    KeyRequest,
    Operator,
    PartnerDetail,
    PartnerFilter,
    PartnerPage,
    PartnerQuery,
    PartnerSummary,
    RetiredKey,
)
from core.admin.ports import ApiKeys, LedgerItem, Notifier, PartnerIndex, UsageLedger
from core.admin.settings import AdminSettings, UsageExportSettings
from core.admin.usage_export import ExportFormat, ScheduledExport, UsageExporter, export_location, parse_period
from core.errors import (
    DomainError,
    InvalidRequest,
    PartnerNotActive,
    PartnerNotFound,
    PartnerRevoked,
    TierChangeInProgress,
)
from core.key_rotation import KeyRotation, RotatedKey
from core.key_rotation_on_aws import key_rotation_on_aws
from core.models import KEYLESS, AuditEntry, Partner, PartnerStatus, Tier
from core.observability import logger
from core.periods import period_bounds, period_key
from core.plan_moves import PlanMover, quota_window
from core.ports import AuditLog, RequestCounts, TierChangeLock, UsagePlanGateway
from core.settings import load_settings
from core.tier_changes import OrderedTierChange, TierChanger
from core.tiers import TierCatalog

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
        keys: ApiKeys,
        plans: UsagePlanGateway | None = None,
        tier_state: TierChangeLock | None = None,
        counts: RequestCounts | None = None,
        rotation: KeyRotation | None = None,
        ledger: UsageLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._partners = partners
        self._keys = keys
        self._plans = plans
        self._mover = PlanMover(plans, counts) if plans is not None else None
        self._ledger = ledger
        self._tier_state = tier_state
        self._tier_changer = (
            TierChanger(plans, tier_state, counts, settings.change_lease_seconds, clock)
            if plans is not None and tier_state is not None
            else None
        )
        self.tiers = TierCatalog(settings.stack_name, plans, settings.tier_cache_seconds) if plans else None
        self._rotation = rotation
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
        return PartnerDetail(partner=PartnerSummary.of(partner), standing=self.standing(partner), audit=trail)

    def standing(self, partner: Partner) -> dict[str, Any]:
        """The partner's key this quota period: requests as GetUsage reports them for the key in its tier's plan
        (fresh, not the quota monitor's reading, which can be a run old), tokens and extensions from the AI
        API's ledger, and the quota alerts sent. Each part that cannot be read says so instead of failing the
        answer; a keyless partner (revoked, dormant) has no requests to read."""
        ledger = self._ledger
        if self.tiers is None or self._plans is None or ledger is None:
            return {}
        try:
            tier = self.tiers.get(partner.tier)
        except DomainError:
            return {"error": f"the stack has no {partner.tier} tier"}
        now = datetime.fromtimestamp(self._clock(), UTC)
        item = self._ledger_item(partner, tier, now)
        found: dict[str, Any] = {
            "period": {"start": period_key(item.period_start), "resets_at": period_key(item.period_reset)},
        }
        totals = self._read_part(found, "tokens", lambda: ledger.totals(partner.api_key_id, item.period_start))
        if totals is not None:
            policy = self._settings.tiers.get(tier.name)
            budget = (
                None if policy is None or policy.unlimited_tokens else policy.token_budget + totals.extension_tokens
            )
            # As /v1/usage counts them: the partner's this period, a previous key's (carried) included.
            used = totals.prompt_tokens + totals.completion_tokens + totals.carried_tokens
            committed = used + totals.reserved_tokens
            found["tokens"] = {
                "prompt": totals.prompt_tokens,
                "completion": totals.completion_tokens,
                "used": used,
                "reserved": totals.reserved_tokens,
                "carried": totals.carried_tokens,
                "extension": totals.extension_tokens,
                "budget": budget,
                "remaining": None if budget is None else max(budget - committed, 0),
            }
        requests = (
            None
            if partner.status in KEYLESS
            else self._read_part(found, "requests", lambda: self._requests_standing(partner.api_key_id, tier, now))
        )
        if requests is not None:
            found["requests"] = {
                **requests,
                "extension": totals.extension_requests if totals else None,
                "ledger_count": totals.requests if totals else None,
            }
        alerts = self._read_part(found, "alerts", lambda: ledger.alerts(partner.api_key_id, item.period_start))
        if alerts is not None:
            found["alerts"] = alerts
        return found

    def _requests_standing(self, key_id: str, tier: Tier, now: datetime) -> dict[str, Any]:
        """GetUsage for the key in the tier's plan this period: used (the days' sum), remaining (today's), and the
        allowance as the quota monitor computes it (the plan's quota, or used + remaining after an extension)."""
        assert self._plans is not None
        window = quota_window(tier, now)
        if window is None:
            return {"source": "GetUsage", "limit": None}
        days = self._plans.key_usage(tier.plan_id, key_id, window.start, window.today)
        used = sum(day.used for day in days)
        remaining = days[-1].remaining if days else tier.limits.quota_limit or 0
        limit = max(tier.limits.quota_limit or 0, used + remaining)
        return {"source": "GetUsage", "used": used, "remaining": remaining, "limit": limit}

    @staticmethod
    def _read_part[T](found: dict[str, Any], part: str, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except Exception as exc:
            logger.warning("could not read a part of a partner's standing", part=part, error=type(exc).__name__)
            found[part] = {"error": f"unavailable ({type(exc).__name__})"}
            return None

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
            # A failure may say what it left behind (e.g. requests granted whose ledger record failed).
            left = getattr(exc, "audit_details", None) or {}
            self._finish_quietly(entry, "failed", {"error": type(exc).__name__, **left})
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

    # --- Suspend, resume, revoke ---------------------------------------------------------------------------
    # Each step order leaves the more restrictive state behind when a call fails: the record is held first and
    # the key disabled after (a failed disable puts the record back); a resumed key is enabled before the
    # record lets the AI API serve it (a failed record write disables it again). Each is idempotent: the
    # operator's retry finishes what a failure interrupted.

    def suspend(self, operator: Operator, partner_id: str, reason: str) -> ActionResult:
        """The key is disabled (UpdateApiKey) and the partner SUSPENDED until an operator resumes it; the status
        billing gave it is kept (`held_status`) for the resume."""

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            if partner.status is PartnerStatus.REVOKED:
                raise PartnerRevoked(partner.partner_id, "suspend")
            if partner.status is PartnerStatus.SUSPENDED:
                self._keys.disable_key(partner.api_key_id)  # finishes an interrupted suspension; idempotent
                return partner, {"changed": 0}
            held = partner.status
            self._set_status(partner, PartnerStatus.SUSPENDED, held)
            try:
                self._keys.disable_key(partner.api_key_id)
            except Exception:
                self._put_back(partner, PartnerStatus.SUSPENDED)
                raise
            after = partner.model_copy(update={"status": PartnerStatus.SUSPENDED, "held_status": held})
            return after, {"changed": 1, "previous_status": held.value}

        return self.act(operator, partner_id, "suspend", reason, change)

    def resume(self, operator: Operator, partner_id: str, reason: str) -> ActionResult:
        """Lift a suspension: the partner gets back the status billing gave it (ACTIVE: its key is enabled;
        DISABLED, a cancelled subscription: its key stays disabled)."""

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            if partner.status is PartnerStatus.REVOKED:
                raise PartnerRevoked(partner.partner_id, "resume")
            if partner.status is not PartnerStatus.SUSPENDED:
                return partner, {"changed": 0}
            restored = partner.held_status or PartnerStatus.ACTIVE
            if restored is PartnerStatus.ACTIVE:
                self._keys.enable_key(partner.api_key_id)
            try:
                self._set_status(partner, restored, None)
            except Exception:
                if restored is PartnerStatus.ACTIVE:
                    self._quietly(self._keys.disable_key, partner.api_key_id)
                raise
            after = partner.model_copy(update={"status": restored, "held_status": None})
            return after, {"changed": 1, "status": restored.value}

        return self.act(operator, partner_id, "resume", reason, change)

    def revoke(self, operator: Operator, partner_id: str, reason: str) -> ActionResult:
        """The key is deleted (DeleteApiKey); the partner stays, REVOKED, with the status billing gave it kept
        for a re-issue. Disabled first and recorded before the deletion, so a failure leaves a disabled key on a
        REVOKED partner, which the operator's retry deletes."""

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            if partner.status is PartnerStatus.REVOKED:
                self._keys.delete_key(partner.api_key_id)  # finishes an interrupted revocation; idempotent
                return partner, {"changed": 0}
            held = partner.held_status if partner.status is PartnerStatus.SUSPENDED else partner.status
            self._keys.disable_key(partner.api_key_id)
            try:
                self._set_status(partner, PartnerStatus.REVOKED, held)
            except Exception:
                if partner.status is PartnerStatus.ACTIVE:
                    self._quietly(self._keys.enable_key, partner.api_key_id)
                raise
            self._keys.delete_key(partner.api_key_id)
            after = partner.model_copy(update={"status": PartnerStatus.REVOKED, "held_status": held})
            return after, {"changed": 1, "previous_status": partner.status.value, "deleted_key_id": partner.api_key_id}

        return self.act(operator, partner_id, "revoke", reason, change)

    # --- Key import ------------------------------------------------------------------------------------------

    def import_keys(self, operator: Operator, importer: KeyImporter, body: bytes, reason: str) -> ImportReport:
        """Import the CSV's good rows (core.admin.key_import); each imported partner gets an `import` entry in its
        audit trail and an operator-action notification, like every change."""
        report = importer.run(body)
        for row in report.imported:

            def recorded(partner: Partner, row: Any = row) -> tuple[Partner, dict[str, Any]]:
                return partner, {"row": row.row, "tier": row.tier, "api_key_id": row.api_key_id}

            try:
                self.act(operator, row.partner_id, "import", reason, recorded)
            except Exception:
                # The partner is imported and whole; only its record of the import is missing.
                logger.exception("could not record an imported partner", partner_id=row.partner_id)
        return report

    # --- Tier change ----------------------------------------------------------------------------------------------

    def change_tier(self, operator: Operator, partner_id: str, tier_name: str, reason: str) -> ActionResult:
        """Put the partner on `tier_name` as a billing subscription would (core.tier_changes, the billing webhook's
        code): the key moves to the tier's plan with this period's usage carried once, and an ACTIVE or DISABLED
        partner becomes ACTIVE (the operator's change is the subscription: sales-led deals never pass through
        billing). A held partner (SUSPENDED, REVOKED, DORMANT) keeps its status; its tier is recorded, and ACTIVE
        is kept for the resume. The change takes its place among billing events by event time: stamped now (or
        just after the last applied change, if that one's clock ran ahead), so an older billing event delivered
        later is stale and a later one still wins. UnknownTier (400) before anything is recorded."""
        if self._tier_changer is None or self._tier_state is None or self.tiers is None:
            raise RuntimeError("AdminService was built without the tier-change ports")
        changer, records, catalog = self._tier_changer, self._tier_state, self.tiers
        tier = catalog.get(tier_name)

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            found = records.get_with_state(partner.partner_id)
            if found is None:
                raise PartnerNotFound(partner.partner_id)
            current, state = found
            occurred_at_us = max(int(self._clock() * 1_000_000), (state.tier_event_at or 0) + 1)
            ordered = OrderedTierChange(f"operator:{uuid.uuid4().hex}", occurred_at_us, tier, PartnerStatus.ACTIVE)
            applied = changer.apply(current, state, ordered, list(catalog.all().values()), notify=False)
            planned = applied.plan
            after = current.model_copy(
                update={"tier": planned.to_tier.name, "status": planned.to_status, "held_status": planned.held_status}
            )
            details: dict[str, Any] = {
                "changed": int(planned.changes_partner),
                "previous_tier": current.tier,
                "tier": planned.to_tier.name,
                "previous_status": current.status.value,
                "status": planned.to_status.value,
                "event_id": ordered.event_id,
                "event_at_us": occurred_at_us,
                "moved": int(planned.moving),
            }
            if applied.remaining is not None:
                details["remaining"] = applied.remaining
            return after, details

        return self.act(operator, partner_id, "tier", reason, change)

    def issue_key(self, operator: Operator, partner_id: str, request: KeyRequest) -> KeyIssued:
        """Rotate an ACTIVE partner's key (the old one works `grace_seconds` more, then the retired-key sweep
        deletes it; 0: deleted now) or re-issue one to a REVOKED or DORMANT partner, which is ACTIVE again
        (core.key_rotation). SUSPENDED and DISABLED partners are refused (409 partner_not_active)."""
        if self._rotation is None:
            raise RuntimeError("AdminService was built without the key rotation")
        rotation = self._rotation
        rotated: list[RotatedKey] = []

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            rotated.append(rotation.rotate(partner, request.grace_seconds, "a new key"))
            return rotated[0].partner, {"grace_seconds": request.grace_seconds, **rotated[0].details}

        result = self.act(operator, partner_id, "issue-key", request.reason, change)
        done = rotated[0]
        retired = None
        if done.retired_key_id and done.retire_at is not None:
            retired = RetiredKey(
                api_key_id=done.retired_key_id,
                delete_at=datetime.fromtimestamp(done.retire_at, UTC).isoformat(timespec="seconds"),
                deleted=done.old_key_deleted,
            )
        return KeyIssued(
            partner=result.partner,
            audit=result.audit,
            api_key=done.key.value,
            api_key_id=done.key.id,
            retired_key=retired,
        )

    # --- Usage extension ------------------------------------------------------------------------------------------

    def extend(self, operator: Operator, partner_id: str, requests: int, tokens: int, reason: str) -> ActionResult:
        """Add `requests` to the key's quota and `tokens` to its token budget, for the current quota period only.

        Requests: UpdateUsage on the key's plan, to what it has left now plus `requests` (left now: GetUsage's
        remaining, less requests the ledger counted that GetUsage does not show yet). Tokens: the ledger item
        (`extension_tokens`, which the AI API's budget check honours), with `extension_requests` recorded there
        for /v1/usage and the usage export. Requests first, the ledger second: if the ledger write fails the
        requests are taken back, so the ledger never records a grant API Gateway does not have; if taking them
        back fails too, the audit entry says `requests_granted` without `ledger_recorded`. Only for an ACTIVE
        partner (409 partner_not_active otherwise)."""
        if self._mover is None or self._plans is None or self._ledger is None or self.tiers is None:
            raise RuntimeError("AdminService was built without the extension ports")
        mover, plans, ledger, catalog = self._mover, self._plans, self._ledger, self.tiers

        def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
            if partner.status is not PartnerStatus.ACTIVE:
                raise PartnerNotActive(partner.partner_id, partner.status.value, "a usage extension")
            tier = mover.current_tier(partner.api_key_id, list(catalog.all().values()))
            if tier is None:
                # Between a tier change's detach and attach: its retry puts the key in a plan.
                raise TierChangeInProgress(retry_after_seconds=5)
            self._refuse_what_the_tier_cannot_take(tier, requests, tokens)
            now = datetime.fromtimestamp(self._clock(), UTC)
            details: dict[str, Any] = {"tier": tier.name, "requests": requests, "tokens": tokens}
            before = None
            if requests:
                before = self._remaining_now(mover, plans, partner.api_key_id, tier, now)
                plans.set_remaining_quota(tier.plan_id, partner.api_key_id, before + requests)
                details.update(remaining_before=before, remaining_after=before + requests)
            item = self._ledger_item(partner, tier, now)
            try:
                totals = ledger.grant(item, requests, tokens, now)
            except Exception as exc:
                if before is not None and not self._take_back(plans, tier, partner.api_key_id, before):
                    exc.audit_details = {"requests_granted": requests, "ledger_recorded": 0}  # type: ignore[attr-defined]
                raise
            details.update(
                period_start=item.period_start.isoformat(),
                extension_requests=totals.extension_requests,
                extension_tokens=totals.extension_tokens,
            )
            return partner, details

        return self.act(operator, partner_id, "extension", reason, change)

    def _refuse_what_the_tier_cannot_take(self, tier: Tier, requests: int, tokens: int) -> None:
        policy = self._settings.tiers.get(tier.name)
        problems = []
        if requests and tier.limits.quota_limit is None:
            problems.append({"field": "requests", "message": f"the {tier.name} tier has no request quota to extend"})
        if tokens and (policy is None or policy.unlimited_tokens):
            problems.append({"field": "tokens", "message": f"the {tier.name} tier has no token budget to extend"})
        if problems:
            raise InvalidRequest("the partner's tier cannot take this extension", problems)

    @staticmethod
    def _remaining_now(mover: PlanMover, plans: UsagePlanGateway, key_id: str, tier: Tier, now: datetime) -> int:
        """What the key has left in its plan this period: GetUsage's remaining, less the requests the ledger
        counted that GetUsage does not report yet (it lags on AWS)."""
        window = quota_window(tier, now)
        assert window is not None  # the tier has a quota (checked before)
        days = plans.key_usage(tier.plan_id, key_id, window.start, window.today)
        reported_used = sum(day.used for day in days)
        reported_remaining = days[-1].remaining if days else tier.limits.quota_limit or 0
        unreported = max(mover.own_usage(tier, key_id, window) - reported_used, 0)
        return max(reported_remaining - unreported, 0)

    def _ledger_item(self, partner: Partner, tier: Tier, now: datetime) -> LedgerItem:
        """The AI API's ledger item for the key's current quota period (the tier policy's period, as the AI API
        keys it; the plan's when the stack has no policy for the tier)."""
        policy = self._settings.tiers.get(tier.name)
        period = policy.quota_period if policy else tier.limits.quota_period or "MONTH"
        start, reset = period_bounds(period, now)
        return LedgerItem(partner.api_key_id, start, reset, tier.name, partner.partner_id)

    @staticmethod
    def _take_back(plans: UsagePlanGateway, tier: Tier, key_id: str, before: int) -> bool:
        try:
            plans.set_remaining_quota(tier.plan_id, key_id, before)
        except Exception:
            logger.exception("could not take back the requests of a failed extension", api_key_id=key_id)
            return False
        return True

    def _set_status(self, partner: Partner, status: PartnerStatus, held: PartnerStatus | None) -> None:
        self._partners.set_status(
            partner.partner_id,
            seen=partner.status,
            status=status,
            held_status=held,
            updated_at=datetime.fromtimestamp(self._clock(), UTC).isoformat(),
            now=self._clock(),
        )

    def _put_back(self, partner: Partner, written: PartnerStatus) -> None:
        """Undo a status this action wrote (its API Gateway step failed)."""

        def restore() -> None:
            self._partners.set_status(
                partner.partner_id,
                seen=written,
                status=partner.status,
                held_status=partner.held_status,
                updated_at=partner.updated_at,
                now=self._clock(),
            )

        self._quietly(restore)

    def _quietly(self, undo: Callable[..., None], *args: str) -> None:
        try:
            undo(*args)
        except Exception:
            # The state left is the more restrictive one; the operator's retry finishes the action.
            logger.exception("could not undo a step of a failed operator action", step=getattr(undo, "__name__", ""))

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
    gateway = ApiGateway()
    return AdminService(
        settings,
        partners=AdminPartners(settings.partners_table),
        audit=AuditTrail(settings.partners_table),
        notifier=AlertTopic(settings.alert_topic_arn),
        keys=gateway,
        plans=gateway,
        tier_state=TierChangeRecords(settings.partners_table),
        counts=LedgerRequests(settings.metering_table),
        rotation=key_rotation_on_aws(
            settings.stack_name,
            gateway,
            partners_table=settings.partners_table,
            metering_table=settings.metering_table,
            tier_cache_seconds=settings.tier_cache_seconds,
        ),
        ledger=AdminLedger(settings.metering_table),
    )


@cache
def key_importer() -> KeyImporter:
    settings = load_settings(AdminSettings)
    gateway = ApiGateway()
    return KeyImporter(
        stack_name=settings.stack_name,
        tiers=TierCatalog(settings.stack_name, gateway, settings.tier_cache_seconds).all,
        partners=PartnerEnrolment(settings.partners_table),
        keys=gateway,
        one_key_per_mailbox=settings.one_key_per_mailbox,
    )


def _exporter(settings: UsageExportSettings) -> UsageExporter:
    gateway = ApiGateway()
    tiers = TierCatalog(settings.stack_name, gateway, settings.tier_cache_seconds)
    return UsageExporter(
        partners=AdminPartners(settings.partners_table),
        tiers=tiers.all,
        usage=gateway,
        ledger=LedgerScan(settings.metering_table),
        page_size=settings.get_usage_page_size,
    )


@cache
def usage_exporter() -> UsageExporter:
    return _exporter(load_settings(AdminSettings))


@cache
def scheduled_export() -> ScheduledExport:
    """UsageExportFunction's run (its own settings: no topic, no tier policies)."""
    settings = load_settings(UsageExportSettings)
    return ScheduledExport(
        _exporter(settings), ExportBucket(settings.usage_export_bucket), settings.usage_export_prefix
    )


def export_usage(period: str, fmt: ExportFormat) -> str:
    """GET /admin/usage: the export of `period` in `fmt` (400 for a bad period, 413 when too large for an answer)."""
    settings = load_settings(AdminSettings)
    chosen = parse_period(period)
    where = export_location(settings.usage_export_bucket, settings.usage_export_prefix, chosen, fmt)
    return usage_exporter().answer(chosen, fmt, where)
