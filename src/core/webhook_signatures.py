"""Billing webhook signatures: which scheme signed a delivery, and whether one of its active secrets did.

Two schemes, chosen by the headers present, each verified by its own package over the raw body:
- Stripe (`Stripe-Signature: t=...,v1=...`): `stripe.WebhookSignature.verify_header`;
- Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`): `standardwebhooks.Webhook.verify`.
Both refuse a timestamp older than 5 minutes; Stripe's package accepts any future timestamp, so a Stripe
timestamp more than 5 minutes ahead is refused here as Standard Webhooks refuses it. Several secrets may
be active per scheme (rotation): a delivery passes if any of them signed it. Nothing here logs a secret,
a signature or the body.
"""

import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import stripe
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from core.errors import InvalidSignature, SigningSecretUnavailable
from core.models import WebhookScheme
from core.observability import logger

TOLERANCE_SECONDS: Final = 300
STRIPE_HEADER: Final = "stripe-signature"
STANDARD_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")
STRIPE: Final = "stripe"
STANDARD: Final = "standard"

_OUTSIDE_TOLERANCE = "the signature's timestamp is outside the 5-minute tolerance"
_NO_MATCH = "the signature does not match the body under any active signing secret"


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature verified: its scheme, the body as signed, and the sender's message id."""

    scheme: WebhookScheme
    body: str
    message_id: str | None  # webhook-id (Standard Webhooks); Stripe's event id is in the body


@dataclass(frozen=True)
class SigningSecrets:
    """The active secrets of each scheme, from the secret's JSON: {"stripe": [...], "standard": [...]}."""

    stripe: tuple[str, ...]
    standard: tuple[Webhook, ...]

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "SigningSecrets":
        return cls(
            stripe=tuple(_strings(value.get(STRIPE))),
            standard=tuple(verifier for secret in _strings(value.get(STANDARD)) if (verifier := _standard(secret))),
        )


def _strings(value: Any) -> list[str]:
    # Each scheme takes one secret or a list (several are active while a secret is rotated); "" means none.
    values = value if isinstance(value, list) else [value]
    return [item.strip() for item in values if isinstance(item, str) and item.strip()]


def _standard(secret: str) -> Webhook | None:
    try:
        return Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        # Only the fact is logged: the value stays secret even when it is malformed.
        logger.error("ignoring a malformed Standard Webhooks signing secret (expected whsec_<base64>)")
        return None


def scheme_of(headers: Mapping[str, str]) -> WebhookScheme:
    """The scheme whose headers are present; refuses none and both (an ambiguous delivery is not trusted)."""
    lowered = {name.lower() for name in headers}
    stripe_signed = STRIPE_HEADER in lowered
    standard_signed = any(name in lowered for name in STANDARD_HEADERS)
    if stripe_signed and standard_signed:
        raise InvalidSignature("send either a Stripe-Signature header or Standard Webhooks headers, not both")
    if stripe_signed:
        return "stripe"
    if standard_signed:
        return "standard"
    raise InvalidSignature(
        "missing signature: send Stripe-Signature, or webhook-id, webhook-timestamp and webhook-signature"
    )


def verify(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: SigningSecrets,
    clock: Callable[[], float] = time.time,
) -> VerifiedDelivery:
    """Verify a delivery before anything reads its body; raise InvalidSignature (or SigningSecretUnavailable)."""
    scheme = scheme_of(headers)
    try:
        body = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8 text, so it cannot carry a valid signature") from None
    lowered = {name.lower(): value for name, value in headers.items()}
    if scheme == "stripe":
        _verify_stripe(body, lowered[STRIPE_HEADER], secrets.stripe, clock)
        return VerifiedDelivery(scheme="stripe", body=body, message_id=None)
    _verify_standard(body, lowered, secrets.standard)
    return VerifiedDelivery(scheme="standard", body=body, message_id=lowered["webhook-id"])


def _verify_stripe(body: str, header: str, secrets: tuple[str, ...], clock: Callable[[], float]) -> None:
    if not secrets:
        raise SigningSecretUnavailable("no Stripe signing secret is configured")
    reasons = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            reasons.append(_stripe_reason(str(exc)))
            continue
        if _stripe_timestamp(header) > clock() + TOLERANCE_SECONDS:
            raise InvalidSignature(_OUTSIDE_TOLERANCE)
        return
    # The signature matched some secret but was too old: say so rather than "no match".
    raise InvalidSignature(_OUTSIDE_TOLERANCE if _OUTSIDE_TOLERANCE in reasons else reasons[0])


def _stripe_reason(message: str) -> str:
    if "tolerance" in message:
        return _OUTSIDE_TOLERANCE
    if message.startswith(("Unable to extract", "No signatures found with expected scheme")):
        return "the Stripe-Signature header is malformed (expected t=<timestamp>,v1=<signature>)"
    if message.startswith("No Stripe-Signature"):
        return "the Stripe-Signature header is empty"
    return _NO_MATCH


def _stripe_timestamp(header: str) -> int:
    # verify_header has parsed it already; only its t= value is needed here.
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    return int(parts["t"])


def _verify_standard(body: str, headers: dict[str, str], secrets: tuple[Webhook, ...]) -> None:
    if not secrets:
        raise SigningSecretUnavailable("no Standard Webhooks signing secret is configured")
    signed = {name: headers.get(name, "") for name in STANDARD_HEADERS}
    missing = [name for name, value in signed.items() if not value]
    if missing:
        raise InvalidSignature(f"missing {', '.join(missing)} header")
    for verifier in secrets:
        try:
            verifier.verify(body, signed, json_parse=False)
            return
        except WebhookVerificationError as exc:
            message = str(exc)
            if "timestamp too" in message:
                raise InvalidSignature(_OUTSIDE_TOLERANCE) from None
            if message == "Invalid Signature Headers":
                raise InvalidSignature("the webhook-timestamp header is not a number of seconds") from None
        except (ValueError, binascii.Error):
            # standardwebhooks splits "v1,<base64>" and decodes it without guarding either step.
            raise InvalidSignature(
                "the webhook-signature header is malformed (expected space-separated v1,<base64>)"
            ) from None
    raise InvalidSignature(_NO_MATCH)
