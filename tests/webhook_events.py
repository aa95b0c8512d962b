"""Billing events for the tier-change webhook's tests, signed as the billing systems sign them: Stripe's
test-header helper (`stripe.WebhookSignature.generate_signature_header`) and `standardwebhooks.Webhook.sign`."""

import base64
import copy
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import stripe
from standardwebhooks import Webhook

from tests.lambda_events import sample_event


def stripe_subscription_event(
    *,
    partner_id: str | None,
    lookup_key: str | None = "pro",
    price_id: str = "price_1QxYxAAbCdEfGhIjPro00001",
    event_type: str = "customer.subscription.updated",
    status: str = "active",
    created: int | None = None,
    event_id: str | None = None,
    customer: str = "cus_R2sT3uV4wX5yZ6",
) -> dict[str, Any]:
    """A Stripe subscription event in the shape Stripe sends (trimmed to what a subscription event holds)."""
    subscription: dict[str, Any] = {
        "id": "sub_1QxYyZAbCdEfGhIjKlMnOpQr",
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": {"partner_id": partner_id} if partner_id else {},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_R2sT7uV8wX9yZ0",
                    "object": "subscription_item",
                    "price": {"id": price_id, "object": "price", "lookup_key": lookup_key, "currency": "usd"},
                    "quantity": 1,
                }
            ],
        },
    }
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": subscription},
    }


def generic_event(
    *, partner_id: str, tier: str | None = "pro", event_type: str = "subscription.updated", at: datetime | None = None
) -> dict[str, Any]:
    """The documented generic event for any billing system (Standard Webhooks)."""
    data: dict[str, Any] = {"partner_id": partner_id}
    if tier is not None:
        data["tier"] = tier
    timestamp = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {"type": event_type, "timestamp": timestamp, "data": data}


def body_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def stripe_headers(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The Stripe-Signature header Stripe would send, from stripe's own test-header helper."""
    return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)}


def standard_headers(
    body: str, secret: str, message_id: str | None = None, timestamp: datetime | None = None
) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature, signed with standardwebhooks' Webhook.sign."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }


def webhook_proxy_event(body: str | None, headers: dict[str, str], *, base64_body: bool = False) -> dict[str, Any]:
    """The sample POST /webhooks/billing proxy event with this body and these signature headers."""
    event = copy.deepcopy(sample_event("billing_webhook_stripe.json"))
    base = {
        name: value
        for name, value in event["headers"].items()
        if name.lower() not in {"stripe-signature", "webhook-id", "webhook-timestamp", "webhook-signature"}
    }
    event["headers"] = {**base, **headers}
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    event["body"] = base64.b64encode(body.encode()).decode() if base64_body and body is not None else body
    event["isBase64Encoded"] = base64_body
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    return event
