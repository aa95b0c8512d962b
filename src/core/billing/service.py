"""The billing webhook's service: verify a delivery, read the tier change it asks for, apply it once, in order.

1. The signature is verified on the raw body before anything parses it (`core.billing.signatures`).
2. Event types we do not handle are acknowledged and ignored.
3. Each event id is processed once (Powertools idempotency, records kept `processed_event_seconds`); and
   on the partner record, an event not newer than the last applied one changes nothing (a duplicate is
   recognised by its id, an older event is stale), so events applied out of order never roll a tier back.
4. The change is applied by the kernel's `core.tier_changes` (the operator console's tier changes too, in the
   same order): a lock (a lease) on the partner record, which also journals the usage to carry over, so a
   change that dies half-way is finished by the next attempt instead of being lost.
5. The key moves between plans (`core.plan_moves`), its period's usage is carried over, it is disabled on
   cancellation (or moved to the free tier) and enabled again by a later subscription.
6. Each applied change is published to the operators' topic; a failed publish is retried with the event.
An event for a partner we do not know (a race with signup) is recorded and answered "retry later" for
`unknown_partner_retry_seconds`; after that it is parked for operators (metric, alarm, notification) and
acknowledged, so the billing system stops retrying.
"""

import time
from collections.abc import Callable, Mapping
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
    IgnoredBillingEvent,
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
from core.models import Partner, PartnerStatus, Tier, TierChangeState
from core.observability import logger, metrics
from core.ports import RequestCounts, UsagePlanGateway
from core.settings import load_settings
from core.tier_changes import AppliedTierChange, OrderedTierChange, TierChanger
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
        self._changer = TierChanger(plans, partners, counts, settings.change_lease_seconds, clock)
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
        if not state.is_newer(event.occurred_at_us, event.event_id):
            return self._already_applied(event, partner, state)
        to_tier, status = self._target(event, partner)
        change = OrderedTierChange(event.event_id, event.occurred_at_us, to_tier, status)
        applied = self._changer.apply(partner, state, change, list(self.tiers.all().values()), notify=True)
        return self._finish(event, applied)

    def _find_partner(self, event: BillingEvent) -> tuple[Partner, TierChangeState] | None:
        partner_id = event.partner_id
        if partner_id is None and event.customer_id:
            partner_id = self._partners.partner_for_customer(event.customer_id)
        return self._partners.get_with_state(partner_id) if partner_id else None

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

    def _finish(self, event: BillingEvent, applied: AppliedTierChange) -> TierChangeOutcome:
        change, remaining = applied.plan, applied.remaining
        partner = change.partner
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

    def _already_applied(self, event: BillingEvent, partner: Partner, state: TierChangeState) -> TierChangeOutcome:
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
