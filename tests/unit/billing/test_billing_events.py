"""Verified billing payloads to tier changes: Stripe subscription events and the generic event."""

import json
from typing import Any

import pytest

from core.billing.events import parse_delivery, parse_generic, parse_stripe
from core.billing.models import BillingEvent, IgnoredBillingEvent, TierAction
from core.billing.signatures import VerifiedDelivery
from core.errors import InvalidRequest, UnprocessableEvent
from tests.lambda_events import sample_event
from tests.webhook_events import generic_event, stripe_subscription_event

TIERS = {"free", "pro", "enterprise"}


def stripe(payload: dict[str, Any], price_tiers: dict[str, str] | None = None) -> BillingEvent:
    parsed = parse_stripe(payload, TIERS, price_tiers or {})
    assert isinstance(parsed, BillingEvent)
    return parsed


def test_a_price_whose_lookup_key_is_a_tier_name_maps_to_that_tier() -> None:
    event = stripe(stripe_subscription_event(partner_id="p_1", lookup_key="pro", created=1_795_511_700))

    assert (event.action, event.tier, event.partner_id) == (TierAction.SUBSCRIBE, "pro", "p_1")
    assert event.customer_id == "cus_R2sT3uV4wX5yZ6"
    assert event.occurred_at_us == 1_795_511_700_000_000


def test_the_configured_price_map_overrides_the_lookup_key() -> None:
    payload = stripe_subscription_event(partner_id="p_1", lookup_key="pro", price_id="price_gold")

    assert stripe(payload, {"price_gold": "enterprise"}).tier == "enterprise"


def test_add_on_prices_that_map_to_no_tier_are_ignored() -> None:
    payload = stripe_subscription_event(partner_id="p_1", lookup_key="pro")
    add_on = {"id": "si_2", "price": {"id": "price_support", "lookup_key": "priority_support"}}
    payload["data"]["object"]["items"]["data"].append(add_on)

    assert stripe(payload).tier == "pro"


def test_prices_of_two_tiers_are_unprocessable() -> None:
    payload = stripe_subscription_event(partner_id="p_1", lookup_key="pro")
    payload["data"]["object"]["items"]["data"].append({"price": {"id": "price_e", "lookup_key": "enterprise"}})

    with pytest.raises(UnprocessableEvent, match="several tiers"):
        stripe(payload)


def test_a_price_map_naming_an_unknown_tier_is_unprocessable() -> None:
    payload = stripe_subscription_event(partner_id="p_1", price_id="price_gold")

    with pytest.raises(UnprocessableEvent, match="unknown tier 'gold'"):
        stripe(payload, {"price_gold": "gold"})


@pytest.mark.parametrize(
    ("event_type", "status", "action"),
    [
        ("customer.subscription.created", "active", TierAction.SUBSCRIBE),
        ("customer.subscription.updated", "trialing", TierAction.SUBSCRIBE),
        ("customer.subscription.updated", "past_due", TierAction.SUBSCRIBE),
        ("customer.subscription.resumed", "active", TierAction.SUBSCRIBE),
        ("customer.subscription.updated", "unpaid", TierAction.CANCEL),
        ("customer.subscription.updated", "canceled", TierAction.CANCEL),
        ("customer.subscription.paused", "paused", TierAction.CANCEL),
        ("customer.subscription.deleted", "canceled", TierAction.CANCEL),
        ("customer.subscription.updated", "incomplete_expired", TierAction.CANCEL),
    ],
)
def test_the_subscription_status_decides_between_subscribing_and_cancelling(
    event_type: str, status: str, action: TierAction
) -> None:
    event = stripe(stripe_subscription_event(partner_id="p_1", event_type=event_type, status=status))

    assert event.action is action
    assert (event.tier is None) == (action is TierAction.CANCEL)


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("invoice.payment_failed", "active"),
        ("customer.created", "active"),
        ("customer.subscription.created", "incomplete"),
    ],
)
def test_other_events_are_ignored_with_a_reason(event_type: str, status: str) -> None:
    parsed = parse_stripe(stripe_subscription_event(partner_id="p_1", event_type=event_type, status=status), TIERS, {})

    assert isinstance(parsed, IgnoredBillingEvent)
    assert parsed.reason


def test_an_expanded_customer_object_gives_its_id() -> None:
    payload = stripe_subscription_event(partner_id=None)
    payload["data"]["object"]["customer"] = {"id": "cus_expanded", "object": "customer"}

    event = stripe(payload)

    assert (event.partner_id, event.customer_id) == (None, "cus_expanded")


def test_a_stripe_event_without_its_fields_is_a_400_naming_them() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_stripe({"type": "customer.subscription.updated", "data": {"object": {}}}, TIERS, {})

    assert {"id", "created"} <= {detail["field"] for detail in refused.value.details}


def test_the_generic_event_subscribes_or_cancels_a_partner() -> None:
    updated = parse_generic(generic_event(partner_id="p_1", tier="enterprise"), "msg_1", TIERS)
    cancel = generic_event(partner_id="p_1", tier=None, event_type="subscription.canceled")
    canceled = parse_generic(cancel, "msg_2", TIERS)

    assert isinstance(updated, BillingEvent) and isinstance(canceled, BillingEvent)
    assert (updated.action, updated.tier, updated.event_id) == (TierAction.SUBSCRIBE, "enterprise", "msg_1")
    assert (canceled.action, canceled.tier) == (TierAction.CANCEL, None)


def test_generic_timestamps_keep_microseconds_so_close_events_stay_ordered() -> None:
    first = generic_event(partner_id="p_1")
    first["timestamp"] = "2026-11-24T09:15:00.000001Z"
    second = {**first, "timestamp": "2026-11-24T09:15:00.000002Z"}

    parsed = [parse_generic(payload, "msg", TIERS) for payload in (first, second)]

    assert isinstance(parsed[0], BillingEvent) and isinstance(parsed[1], BillingEvent)
    assert parsed[1].occurred_at_us - parsed[0].occurred_at_us == 1


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"data": {"partner_id": "p_1"}}, InvalidRequest),  # no tier for an update
        ({"data": {"partner_id": "p_1", "tier": "gold"}}, UnprocessableEvent),
        ({"timestamp": "2026-11-24T09:15:00"}, InvalidRequest),  # no time zone
        ({"data": {"tier": "pro"}}, InvalidRequest),
    ],
)
def test_a_malformed_generic_event_is_refused(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_generic({**generic_event(partner_id="p_1"), **change}, "msg_1", TIERS)


@pytest.mark.parametrize("sample", ["billing_webhook_stripe.json", "billing_webhook_standard.json"])
def test_the_sample_events_are_upgrades_to_pro(sample: str) -> None:
    event = sample_event(sample)
    payload = json.loads(event["body"])

    parsed = (
        parse_stripe(payload, TIERS, {})
        if "Stripe-Signature" in event["headers"]
        else parse_generic(payload, event["headers"]["webhook-id"], TIERS)
    )

    assert isinstance(parsed, BillingEvent)
    assert (parsed.action, parsed.tier, parsed.partner_id) == (
        TierAction.SUBSCRIBE,
        "pro",
        "p_0123456789abcdef0123456789abcdef",
    )


# --- Bounds a signed body must keep -----------------------------------------------------------------------------


SIGNED_AT = 1_795_511_700


def _stripe_delivery(created: int) -> VerifiedDelivery:
    body = json.dumps(stripe_subscription_event(partner_id="p_1", created=created))
    return VerifiedDelivery(scheme="stripe", body=body, message_id=None, signed_at=SIGNED_AT)


@pytest.mark.parametrize(("ahead", "accepted"), [(-3600, True), (0, True), (300, True), (301, False)])
def test_an_event_may_be_dated_at_most_300_seconds_after_its_signature(ahead: int, accepted: bool) -> None:
    # Given a Stripe event created `ahead` seconds after the signature's timestamp
    delivery = _stripe_delivery(SIGNED_AT + ahead)

    # When it is parsed
    if accepted:
        # Then up to 300 s (clock skew between the billing system's event and its signature) it is an event
        assert isinstance(parse_delivery(delivery, TIERS, {}), BillingEvent)
        return
    # Then later than that it is refused, naming `created`
    with pytest.raises(InvalidRequest) as refused:
        parse_delivery(delivery, TIERS, {})
    assert refused.value.details[0]["field"] == "created"


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_json_nested_deeper_than_64_levels_is_refused_without_recursing(depth: int) -> None:
    body = '{"a":' * depth + "1" + "}" * depth
    delivery = VerifiedDelivery(scheme="stripe", body=body, message_id=None, signed_at=SIGNED_AT)

    with pytest.raises(InvalidRequest, match="nested too deeply"):
        parse_delivery(delivery, TIERS, {})
