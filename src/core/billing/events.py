"""Verified billing payloads turned into tier changes: Stripe subscription events and the generic event.

Stripe (`customer.subscription.created|updated|deleted|paused|resumed`): the partner is the subscription's
`metadata.partner_id`, or the partner its `customer` was linked to earlier. The tier comes from the
subscription items' prices: a price id listed in StripePriceTiers maps to its tier; otherwise a price whose
`lookup_key` is a tier name (`pro`) maps to that tier. Items whose prices map to no tier (add-ons) are
ignored; exactly one tier must remain. Subscription status decides between subscribing and cancelling.

Generic (Standard Webhooks), for any other billing system:
    {"type": "subscription.updated" | "subscription.canceled", "timestamp": "<ISO 8601 with zone>",
     "data": {"partner_id": "p_...", "tier": "pro"}}
`subscription.updated` means "this partner is subscribed to this tier" (a new subscription, a change, a
return); `subscription.canceled` needs no tier. The event id is the `webhook-id` header.

Hostile bodies behind a valid signature are 400s: JSON nested deeper than MAX_JSON_DEPTH, ids longer than
the partners table's keys take, and an event dated more than the signature tolerance after its own signature
(it would order after every real event and freeze the partner's tier).
"""

import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from core.billing.models import BillingEvent, IgnoredBillingEvent, TierAction
from core.billing.signatures import TOLERANCE_SECONDS, VerifiedDelivery
from core.errors import InvalidRequest, UnprocessableEvent, invalid_request

STRIPE_SUBSCRIPTION_EVENTS: Final = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
# Stripe subscription statuses (docs.stripe.com/billing/subscriptions/overview#subscription-statuses).
# past_due keeps the tier while Stripe retries the payment; unpaid is where it ends when retries run out.
SUBSCRIBED_STATUSES: Final = frozenset({"active", "trialing", "past_due"})
ENDED_STATUSES: Final = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})
GENERIC_SUBSCRIBE: Final = "subscription.updated"
GENERIC_CANCEL: Final = frozenset({"subscription.canceled", "subscription.cancelled"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_JSON_DEPTH: Final = 64  # Stripe's events nest about 8 deep
MAX_ID_LENGTH: Final = 255  # event, customer and type strings; a partner id is at most MAX_PARTNER_ID_LENGTH
MAX_PARTNER_ID_LENGTH: Final = 200


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _StripePrice(_Loose):
    id: str
    lookup_key: str | None = None


class _StripeItem(_Loose):
    price: _StripePrice


class _StripeItems(_Loose):
    data: list[_StripeItem] = []


class _StripeSubscription(_Loose):
    id: str
    customer: str | dict[str, Any]
    status: str
    metadata: dict[str, str] = {}
    items: _StripeItems = _StripeItems()

    @property
    def customer_id(self) -> str:
        # Webhooks send the id; an expanded customer object carries it as "id".
        return self.customer if isinstance(self.customer, str) else str(self.customer.get("id", ""))


class _StripeEventData(_Loose):
    object: dict[str, Any]


class _StripeEvent(_Loose):
    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    type: str = Field(max_length=MAX_ID_LENGTH)
    created: int = Field(ge=0)
    data: _StripeEventData


class _GenericData(_Loose):
    partner_id: str = Field(min_length=1, max_length=MAX_PARTNER_ID_LENGTH)
    tier: str | None = None


class _GenericEvent(_Loose):
    type: str
    timestamp: AwareDatetime
    data: _GenericData


def parse_delivery(
    delivery: VerifiedDelivery, known_tiers: Collection[str], price_tiers: Mapping[str, str]
) -> BillingEvent | IgnoredBillingEvent:
    """The tier change a verified delivery asks for, or why it asks for none."""
    payload = _json_object(delivery.body)
    if delivery.scheme == "stripe":
        parsed = parse_stripe(payload, known_tiers, price_tiers)
    else:
        assert delivery.message_id is not None  # verification required the webhook-id header
        parsed = parse_generic(payload, delivery.message_id, known_tiers)
    if isinstance(parsed, BillingEvent):
        _not_after_signature(parsed, delivery.signed_at)
    return parsed


def _not_after_signature(event: BillingEvent, signed_at: int) -> None:
    # An event happens before it is signed and sent; one dated later would order after every real event.
    if event.occurred_at_us > (signed_at + TOLERANCE_SECONDS) * 1_000_000:
        field = "created" if event.scheme == "stripe" else "timestamp"
        message = f"the event is dated more than {TOLERANCE_SECONDS} s after its signature's timestamp"
        raise InvalidRequest("request body is invalid", [{"field": field, "message": message}])


def _json_object(body: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except RecursionError:
        payload = None  # deeper than the parser goes: refused below with the same answer as any deep body
    except ValueError:
        raise InvalidRequest("the event body is not valid JSON") from None
    if payload is None or _depth(payload) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the event body is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    if not isinstance(payload, dict):
        raise InvalidRequest("the event body must be a JSON object")
    return payload


def _depth(value: Any) -> int:
    # Iterative: the point is to refuse bodies that recursion would choke on.
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_stripe(
    payload: dict[str, Any], known_tiers: Collection[str], price_tiers: Mapping[str, str]
) -> BillingEvent | IgnoredBillingEvent:
    event = _validated(_StripeEvent, payload)
    if event.type not in STRIPE_SUBSCRIPTION_EVENTS:
        return _ignored("stripe", event.id, event.type, "event type not handled")
    subscription = _validated(_StripeSubscription, event.data.object, prefix="data.object")
    action = _stripe_action(event.type, subscription.status)
    if action is None:
        return _ignored("stripe", event.id, event.type, f"subscription status {subscription.status!r} changes nothing")
    partner_id = subscription.metadata.get("partner_id", "").strip() or None
    customer_id = subscription.customer_id or None
    _bounded(partner_id, MAX_PARTNER_ID_LENGTH, "data.object.metadata.partner_id")
    _bounded(customer_id, MAX_ID_LENGTH, "data.object.customer")
    if partner_id is None and customer_id is None:
        raise UnprocessableEvent("the subscription has neither metadata.partner_id nor a customer")
    return BillingEvent(
        scheme="stripe",
        event_id=event.id,
        event_type=event.type,
        occurred_at_us=event.created * 1_000_000,
        action=action,
        tier=_stripe_tier(subscription, known_tiers, price_tiers) if action is TierAction.SUBSCRIBE else None,
        partner_id=partner_id,
        customer_id=customer_id,
    )


def _stripe_action(event_type: str, status: str) -> TierAction | None:
    if event_type == "customer.subscription.deleted" or status in ENDED_STATUSES:
        return TierAction.CANCEL
    if status in SUBSCRIBED_STATUSES:
        return TierAction.SUBSCRIBE
    return None  # "incomplete": the first payment has not succeeded yet; its next update decides


def _stripe_tier(
    subscription: _StripeSubscription, known_tiers: Collection[str], price_tiers: Mapping[str, str]
) -> str:
    tiers = set()
    for item in subscription.items.data:
        price = item.price
        if price.id in price_tiers:
            tiers.add(price_tiers[price.id])
        elif price.lookup_key in known_tiers:
            tiers.add(str(price.lookup_key))
    if not tiers:
        prices = ", ".join(item.price.id for item in subscription.items.data) or "none"
        raise UnprocessableEvent(
            f"no price of subscription {subscription.id} maps to a tier (prices: {prices}); give the price a "
            f"lookup_key that is a tier name ({', '.join(sorted(known_tiers))}) or list it in StripePriceTiers"
        )
    if len(tiers) > 1:
        raise UnprocessableEvent(
            f"subscription {subscription.id} has prices of several tiers ({', '.join(sorted(tiers))})"
        )
    tier = tiers.pop()
    _require_known(tier, known_tiers)
    return tier


def parse_generic(
    payload: dict[str, Any], message_id: str, known_tiers: Collection[str]
) -> BillingEvent | IgnoredBillingEvent:
    _bounded(message_id, MAX_ID_LENGTH, "webhook-id")
    event_type = payload.get("type")
    if not isinstance(event_type, str):
        raise InvalidRequest("request body is invalid", [{"field": "type", "message": "field required"}])
    _bounded(event_type, MAX_ID_LENGTH, "type")
    action: Literal[TierAction.SUBSCRIBE, TierAction.CANCEL]
    if event_type == GENERIC_SUBSCRIBE:
        action = TierAction.SUBSCRIBE
    elif event_type in GENERIC_CANCEL:
        action = TierAction.CANCEL
    else:
        return _ignored("standard", message_id, event_type, "event type not handled")
    event = _validated(_GenericEvent, payload)
    tier = event.data.tier
    if action is TierAction.SUBSCRIBE:
        if not tier:
            raise InvalidRequest("request body is invalid", [{"field": "data.tier", "message": "field required"}])
        _require_known(tier, known_tiers)
    return BillingEvent(
        scheme="standard",
        event_id=message_id,
        event_type=event_type,
        occurred_at_us=_microseconds(event.timestamp),
        action=action,
        tier=tier if action is TierAction.SUBSCRIBE else None,
        partner_id=event.data.partner_id,
    )


def _microseconds(at: datetime) -> int:
    # Exact: float seconds would lose microseconds, and two events a few microseconds apart must stay ordered.
    return (at - _EPOCH) // timedelta(microseconds=1)


def _bounded(value: str | None, limit: int, field: str) -> None:
    if value is not None and len(value) > limit:
        message = f"at most {limit} characters"
        raise InvalidRequest("request body is invalid", [{"field": field, "message": message}])


def _require_known(tier: str, known_tiers: Collection[str]) -> None:
    if tier not in known_tiers:
        raise UnprocessableEvent(f"unknown tier {tier!r}; tiers: {', '.join(sorted(known_tiers))}")


def _validated[Model: BaseModel](model: type[Model], value: Any, prefix: str = "") -> Model:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = invalid_request(exc)
        if prefix:
            error.details = [{**detail, "field": f"{prefix}.{detail['field']}"} for detail in error.details]
        raise error from None


def _ignored(scheme: Literal["stripe", "standard"], event_id: str, event_type: str, reason: str) -> IgnoredBillingEvent:
    return IgnoredBillingEvent(scheme=scheme, event_id=event_id, event_type=event_type, reason=reason)
