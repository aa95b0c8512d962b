"""The billing webhook's service: verify a delivery, read the tier change it asks for, apply it once, in order.

1. The signature is verified on the raw body before anything parses it (`core.billing.signatures`).
2. Event types we do not handle are acknowledged and ignored.
3. Each event id is processed once (Powertools idempotency, records kept `processed_event_seconds`); and
   on the partner record, an event not newer than the last applied one changes nothing (a duplicate is
   recognised by its id, an older event is stale), so events applied out of order never roll a tier back.
4. A change holds a lock (a lease) on the partner record, which also journals the usage to carry over, so
   a change that dies half-way is finished by the next attempt instead of being lost.
5. The key moves between plans (`core.plan_moves`), its period's usage is carried over, it is disabled on
   cancellation (or moved to the free tier) and enabled again by a later subscription.
6. Each applied change is published to the operators' topic; a failed publish is retried with the event.
An event for a partner we do not know (a race with signup) is recorded and answered "retry later" for
`unknown_partner_retry_seconds`; after that it is parked for operators (metric, alarm, notification) and
acknowledged, so the billing system stops retrying.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

from core.adapters.apigateway import ApiGateway
from core.adapters.ledger_requests import LedgerRequests
from core.adapters.sns import AlertTopic
from core.billing.adapters.partners import BillingPartners
from core.billing.adapters.secrets import JsonSecret
from core.billing.events import parse_delivery
from core.billing.models import (
    BillingEvent,
    BillingState,
    IgnoredBillingEvent,
    PendingTierChange,
    TierAction,
    TierChangeOutcome,
    TierChangeStatus,
)
from core.billing.notice import TierChangeNotice
from core.billing.notice import body as notice_body
from core.billing.notice import subject as notice_subject
from core.billing.ports import Notifier, SecretSource, TierChangeStore
from core.billing.settings import BillingWebhookSettings
from core.billing.signatures import SigningSecrets, scheme_of, verify
from core.errors import (
    PartnerNotFoundYet,
    PayloadTooLarge,
    TierChangeInProgress,
    UnknownTier,
    UnprocessableEvent,
)
from core.models import KEYLESS, OPERATOR_HOLDS, Partner, PartnerStatus, Tier
from core.observability import logger, metrics
from core.plan_moves import CarriedUsage, PlanMover, QuotaWindow, quota_window
from core.ports import RequestCounts, UsagePlanGateway
from core.settings import load_settings
from core.tiers import TierCatalog

MAX_BODY_BYTES = 256 * 1024
UNKNOWN_PARTNER_RETRY_AFTER_SECONDS = 60
NOTIFICATION_KIND = "tier-change"
UNMATCHED_KIND = "billing-event-unmatched"


class EventParked(Exception):
    """An unknown partner's event, acknowledged without being applied: its answer must not be replayed from the
    idempotency record, so that a later delivery (after the partner exists) is applied."""

    def __init__(self, outcome: TierChangeOutcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


@dataclass(frozen=True)
class PlannedChange:
    """One event's change, planned from reads only; `journal` is what the partner's lock records."""

    event: BillingEvent
    partner: Partner
    state: BillingState
    at: datetime
    from_tier: Tier | None
    to_tier: Tier
    to_status: PartnerStatus
    moving: bool
    window: QuotaWindow | None
    journal: PendingTierChange
    # An operator holds the partner (SUSPENDED, REVOKED): the status billing would give it, kept for resuming.
    held_status: PartnerStatus | None = None

    @property
    def changes_partner(self) -> bool:
        return (self.partner.tier, self.partner.status) != (self.to_tier.name, self.to_status)


class TierChangeService:
    def __init__(
        self,
        settings: BillingWebhookSettings,
        *,
        plans: UsagePlanGateway,
        partners: TierChangeStore,
        notifier: Notifier,
        secrets: SecretSource,
        idempotency_store: BasePersistenceLayer,
        counts: RequestCounts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._plans = plans
        self._mover = PlanMover(plans, counts)
        self._partners = partners
        self._notifier = notifier
        self._secrets = secrets
        self._clock = clock
        self.tiers = TierCatalog(settings.stack_name, plans, settings.tier_cache_seconds)
        self.idempotency_config = IdempotencyConfig(
            event_key_jmespath="key", expires_after_seconds=settings.processed_event_seconds
        )
        self._apply_once = idempotent_function(
            data_keyword_argument="delivery",
            persistence_store=idempotency_store,
            config=self.idempotency_config,
            output_serializer=PydanticSerializer(TierChangeOutcome),
        )(self._apply_recorded)

    # --- Receiving a delivery -------------------------------------------------------------------------------

    def receive(self, raw_body: bytes, headers: Mapping[str, str]) -> TierChangeOutcome:
        """Verify, parse and apply one webhook delivery; raises domain errors for every refusal."""
        if len(raw_body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(MAX_BODY_BYTES)
        scheme_of(headers)  # no signature headers: refused before the secret is even read
        delivery = verify(raw_body, headers, SigningSecrets.from_json(self._secrets.read()), self._clock)
        tiers = self.tiers.all()
        parsed = parse_delivery(delivery, tiers.keys(), self._settings.stripe_price_tiers)
        if isinstance(parsed, IgnoredBillingEvent):
            logger.info(
                "ignored billing event",
                scheme=parsed.scheme,
                event_id=parsed.event_id,
                event_type=parsed.event_type,
                reason=parsed.reason,
            )
            return TierChangeOutcome(status="ignored", event_id=parsed.event_id, detail=parsed.reason)
        try:
            outcome: TierChangeOutcome = self._apply_once(
                delivery={"key": f"{parsed.scheme}:{parsed.event_id}", "event": parsed.model_dump(mode="json")}
            )
        except IdempotencyAlreadyInProgressError as exc:
            # The same event is being applied by a concurrent delivery: its retry will find the result.
            raise TierChangeInProgress(retry_after_seconds=5) from exc
        except EventParked as parked:
            return parked.outcome
        return outcome

    def _apply_recorded(self, delivery: dict[str, Any]) -> TierChangeOutcome:
        return self.apply(BillingEvent.model_validate(delivery["event"]))

    # --- Applying an event ----------------------------------------------------------------------------------

    def apply(self, event: BillingEvent) -> TierChangeOutcome:
        """Apply a verified event to its partner, unless an event as new or newer was applied already."""
        found = self._find_partner(event)
        if found is None:
            return self._unknown_partner(event)
        partner, state = found
        if event.customer_id and event.partner_id:
            self._partners.link_customer(event.customer_id, partner.partner_id)
        if not state.is_newer(event):
            return self._already_applied(event, partner, state)
        now = self._clock()
        if state.tier_change is not None and state.tier_change.lease_until > now:
            raise TierChangeInProgress(retry_after_seconds=max(1, int(state.tier_change.lease_until - now)))
        change = self._plan(event, partner, state, now)
        self._partners.begin_tier_change(partner.partner_id, change.journal, state, partner.status, now)
        try:
            remaining = self._apply_to_key(change)
        except Exception:
            self._release(partner.partner_id, event.event_id)
            raise
        return self._finish(change, remaining)

    def _find_partner(self, event: BillingEvent) -> tuple[Partner, BillingState] | None:
        partner_id = event.partner_id
        if partner_id is None and event.customer_id:
            partner_id = self._partners.partner_for_customer(event.customer_id)
        return self._partners.get_with_billing(partner_id) if partner_id else None

    def _plan(self, event: BillingEvent, partner: Partner, state: BillingState, now: float) -> "PlannedChange":
        """Where the key is, where it goes, and the usage to carry: all read before anything changes."""
        at = datetime.fromtimestamp(now, UTC)
        to_tier, billed_status = self._target(event, partner)
        # An operator's hold wins over billing: the event's tier is applied, its status is kept for resuming.
        # So does a partner without a key (revoked, or dormant): the change is the record's only.
        keyless = partner.status in KEYLESS
        held = partner.status in OPERATOR_HOLDS or keyless
        to_status = partner.status if held else billed_status
        tiers = list(self.tiers.all().values())
        from_tier = None if keyless else self._mover.current_tier(partner.api_key_id, tiers)
        window = quota_window(to_tier, at)
        moving = not keyless and (from_tier is None or from_tier.plan_id != to_tier.plan_id)
        carried = None if keyless else self._carried(partner.api_key_id, from_tier, to_tier, window, state.tier_change)
        # The lock journals the usage to carry, read before the move: after it, the old plan no longer reports it.
        journal = PendingTierChange(
            event_id=event.event_id,
            to_tier=to_tier.name,
            to_status=to_status,
            lease_until=int(now) + self._settings.change_lease_seconds,
            carried=carried.requests if carried else None,
            carried_in=carried.carried_in if carried else 0,
            window_start=window.start.isoformat() if window and carried is not None else None,
        )
        return PlannedChange(
            event, partner, state, at, from_tier, to_tier, to_status, moving, window, journal,
            held_status=billed_status if held else None,
        )  # fmt: skip

    def _target(self, event: BillingEvent, partner: Partner) -> tuple[Tier, PartnerStatus]:
        if event.action is TierAction.SUBSCRIBE:
            assert event.tier is not None
            return self._tier(event.tier), PartnerStatus.ACTIVE
        if self._settings.cancellation_mode == "move-to-free":
            return self._tier(self._settings.free_tier), PartnerStatus.ACTIVE
        return self._tier(partner.tier), PartnerStatus.DISABLED

    def _tier(self, name: str) -> Tier:
        try:
            return self.tiers.get(name)
        except UnknownTier as exc:
            raise UnprocessableEvent(exc.message) from exc

    def _carried(
        self,
        key_id: str,
        from_tier: Tier | None,
        to_tier: Tier,
        window: QuotaWindow | None,
        journal: PendingTierChange | None,
    ) -> CarriedUsage | None:
        """The usage to carry into `to_tier`: None when nothing is carried (no move, or no quota there)."""
        if window is None:
            return None
        # An interrupted change's journal is good for the same quota period only.
        journaled = (
            CarriedUsage(journal.carried, journal.carried_in)
            if journal and journal.carried is not None and journal.window_start == window.start.isoformat()
            else None
        )
        if from_tier is not None and from_tier.plan_id == to_tier.plan_id:
            # Finishing an interrupted change into this same plan: its carry may not have been made.
            return journaled if journal and journal.to_tier == to_tier.name else None
        if from_tier is None:
            # The key is in no plan: an earlier change died between detaching and attaching.
            if journaled is None:
                logger.warning("key in no plan and no journal: nothing to carry over", api_key_id=key_id)
            return journaled or CarriedUsage(0)
        same_period = from_tier.limits.quota_period == to_tier.limits.quota_period
        into_from = journaled.requests if journaled and journal and journal.to_tier == from_tier.name else None
        return self._mover.consumed(from_tier, key_id, window, same_period, into_from)

    def _apply_to_key(self, change: "PlannedChange") -> int | None:
        """The API Gateway side of a change; the remaining quota set in the new plan, if any."""
        key_id = change.partner.api_key_id
        remaining = None
        if change.partner.status in KEYLESS:
            return None
        if change.to_status is PartnerStatus.DISABLED:
            # Disabled first: a cancelled partner's key stops working before anything else happens.
            self._plans.disable_key(key_id)
        if change.moving:
            self._mover.move(key_id, change.from_tier, change.to_tier)
        carried = change.journal.carried
        if carried is not None and change.window is not None:
            remaining = self._mover.carry(key_id, change.to_tier, carried, change.window, change.journal.carried_in)
        was_active = change.partner.status is PartnerStatus.ACTIVE
        if change.to_status is PartnerStatus.ACTIVE and (not was_active or change.state.tier_change is not None):
            # Enabled last, once the key sits in its new plan with its usage carried over. After an
            # interrupted change the key's state is unknown: enable it again (idempotent).
            self._plans.enable_key(key_id)
        return remaining

    def _finish(self, change: "PlannedChange", remaining: int | None) -> TierChangeOutcome:
        event, partner = change.event, change.partner
        self._partners.finish_tier_change(
            partner.partner_id,
            event,
            tier=change.to_tier.name,
            status=change.to_status,
            held_status=change.held_status,
            updated_at=change.at.isoformat(),
            previous_tier=partner.tier,
            notified=not change.changes_partner,
        )
        self._partners.forget_unmatched(event)
        if not change.changes_partner:
            logger.info("billing event changes nothing", partner_id=partner.partner_id, event_id=event.event_id)
            return self._outcome("unchanged", event, partner, change.to_tier.name, change.to_status)
        metrics.add_metric(name="TierChanges", unit=MetricUnit.Count, value=1)
        logger.info(
            "applied tier change",
            partner_id=partner.partner_id,
            event_id=event.event_id,
            scheme=event.scheme,
            previous_tier=partner.tier,
            tier=change.to_tier.name,
            status=change.to_status.value,
            moved=change.moving,
            remaining=remaining,
        )
        self._notify(event, partner, (partner.tier, partner.status), (change.to_tier.name, change.to_status), remaining)
        return self._outcome("applied", event, partner, change.to_tier.name, change.to_status)

    def _release(self, partner_id: str, event_id: str) -> None:
        try:
            self._partners.release_tier_change(partner_id, event_id)
        except Exception:
            # The lease expires on its own; the next attempt takes over after it.
            logger.exception("could not release the change lock", partner_id=partner_id, event_id=event_id)

    def _already_applied(self, event: BillingEvent, partner: Partner, state: BillingState) -> TierChangeOutcome:
        if state.tier_event_id != event.event_id:
            logger.info(
                "ignored an event older than the last applied one",
                partner_id=partner.partner_id,
                event_id=event.event_id,
                last_event_id=state.tier_event_id,
            )
            return self._outcome("stale", event, partner, partner.tier, partner.status)
        if not state.tier_event_notified:
            # Applied by an earlier delivery whose notification failed: this retry sends it.
            self._notify(event, partner, (state.tier_event_previous_tier, None), (partner.tier, partner.status))
        logger.info("duplicate billing event", partner_id=partner.partner_id, event_id=event.event_id)
        return self._outcome("duplicate", event, partner, partner.tier, partner.status)

    def _notify(
        self,
        event: BillingEvent,
        partner: Partner,
        previous: tuple[str | None, PartnerStatus | None],
        current: tuple[str, PartnerStatus],
        remaining: int | None = None,
    ) -> None:
        (previous_tier, previous_status), (tier, status) = previous, current
        notice = TierChangeNotice(
            event=event,
            partner_id=partner.partner_id,
            partner_name=partner.name,
            previous_tier=previous_tier,
            previous_status=previous_status,
            tier=tier,
            status=status,
            applied_at=datetime.fromtimestamp(self._clock(), UTC),
            remaining=remaining,
        )
        self._notifier.publish(
            notice_subject(notice),
            notice_body(notice, self._settings.tiers),
            {"kind": NOTIFICATION_KIND, "tier": tier, "partner_id": partner.partner_id},
        )
        self._partners.mark_notified(partner.partner_id, event.event_id)

    def _unknown_partner(self, event: BillingEvent) -> TierChangeOutcome:
        now = self._clock()
        sighting = self._partners.record_unmatched(event, now)
        metrics.add_metric(name="UnknownPartnerEvents", unit=MetricUnit.Count, value=1)
        context: dict[str, Any] = {
            "scheme": event.scheme,
            "event_id": event.event_id,
            "partner_id": event.partner_id,
            "customer_id": event.customer_id,
            "deliveries": sighting.deliveries,
        }
        if now - sighting.first_seen_at < self._settings.unknown_partner_retry_seconds:
            logger.warning("billing event for an unknown partner: recorded, sender asked to retry", **context)
            raise PartnerNotFoundYet(event.partner_ref, UNKNOWN_PARTNER_RETRY_AFTER_SECONDS)
        logger.error("billing event for an unknown partner: parked for operators", **context)
        metrics.add_metric(name="UnmatchedBillingEvents", unit=MetricUnit.Count, value=1)
        self._notifier.publish(
            f"Billing event for an unknown {event.partner_ref}",
            {"kind": UNMATCHED_KIND, "first_seen_at": sighting.first_seen_at, **context},
            {"kind": UNMATCHED_KIND},
        )
        detail = f"no partner matches {event.partner_ref}; the event is recorded for operators"
        raise EventParked(TierChangeOutcome(status="recorded", event_id=event.event_id, detail=detail))

    def _outcome(
        self, status: TierChangeStatus, event: BillingEvent, partner: Partner, tier: str, partner_status: PartnerStatus
    ) -> TierChangeOutcome:
        return TierChangeOutcome(
            status=status,
            event_id=event.event_id,
            partner_id=partner.partner_id,
            previous_tier=partner.tier,
            tier=tier,
            partner_status=partner_status,
        )


@cache
def tier_change_service() -> TierChangeService:
    settings = load_settings(BillingWebhookSettings)
    return TierChangeService(
        settings,
        plans=ApiGateway(),
        partners=BillingPartners(settings.partners_table),
        notifier=AlertTopic(settings.alert_topic_arn),
        secrets=JsonSecret(settings.webhook_secret_arn, settings.secret_cache_seconds),
        idempotency_store=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        counts=LedgerRequests(settings.metering_table),
    )
