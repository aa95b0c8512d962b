"""Billing webhook signatures: which scheme signed a delivery, and whether one of its active secrets did.

Two schemes, chosen by the headers present, each verified by its own package over the raw body:
- Stripe (`Stripe-Signature: t=...,v1=...`): `stripe.WebhookSignature.verify_header`;
- Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`): `standardwebhooks.Webhook.verify`.
Both refuse a timestamp more than 5 minutes old or ahead. A header's timestamp is parsed once, here: exactly
one `t=` (Stripe) or `webhook-timestamp` of whole seconds, or the header is malformed (400); Stripe's package
verifies the signature over that same value (its own time check, past only, is not used). Several secrets may
be active per scheme (rotation): a delivery passes if any of them signed it. Nothing here logs a secret,
a signature or the body.
"""

import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import stripe
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from core.billing.models import WebhookScheme
from core.errors import InvalidSignature, MalformedSignature, SigningSecretUnavailable
from core.observability import logger

TOLERANCE_SECONDS: Final = 300
STRIPE_HEADER: Final = "stripe-signature"
STANDARD_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")
STRIPE: Final = "stripe"
STANDARD: Final = "standard"

_OUTSIDE_TOLERANCE = "the signature's timestamp is outside the 5-minute tolerance"
_NO_MATCH = "the signature does not match the body under any active signing secret"
_STRIPE_MALFORMED = "the Stripe-Signature header is malformed (expected one t=<timestamp> and v1=<signature>)"
_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also take " 1", "1_0" and other scripts


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose signature verified: its scheme, the body as signed, and the sender's message id."""

    scheme: WebhookScheme
    body: str
    message_id: str | None  # webhook-id (Standard Webhooks); Stripe's event id is in the body
    signed_at: int  # the signature's timestamp (epoch seconds), within the tolerance of now


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
        signed_at = _verify_stripe(body, lowered[STRIPE_HEADER], secrets.stripe)
        _within_tolerance(signed_at, clock)
        return VerifiedDelivery(scheme="stripe", body=body, message_id=None, signed_at=signed_at)
    signed_at = _verify_standard(body, lowered, secrets.standard)
    return VerifiedDelivery(scheme="standard", body=body, message_id=lowered["webhook-id"], signed_at=signed_at)


def _within_tolerance(signed_at: int, clock: Callable[[], float]) -> None:
    if abs(clock() - signed_at) > TOLERANCE_SECONDS:
        raise InvalidSignature(_OUTSIDE_TOLERANCE)


def _verify_stripe(body: str, header: str, secrets: tuple[str, ...]) -> int:
    """The header's timestamp, once a secret's signature over it and the body matched."""
    if not secrets:
        raise SigningSecretUnavailable("no Stripe signing secret is configured")
    if not header:
        raise MalformedSignature("the Stripe-Signature header is empty")
    signed_at = _stripe_timestamp(header)
    for secret in secrets:
        try:
            # tolerance=None: the package's check reads the past only; both ways are checked with our clock.
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
        except stripe.SignatureVerificationError as exc:
            if str(exc).startswith(("Unable to extract", "No signatures found with expected scheme")):
                raise MalformedSignature(_STRIPE_MALFORMED) from None
            continue
        return signed_at
    raise InvalidSignature(_NO_MATCH)


def _stripe_timestamp(header: str) -> int:
    # The one t= that stripe's verify_header also reads (it takes the first): several are refused, not chosen.
    values = [value for name, _, value in (part.partition("=") for part in header.split(",")) if name == "t"]
    if len(values) != 1 or not _SECONDS.fullmatch(values[0]):
        raise MalformedSignature(_STRIPE_MALFORMED)
    return int(values[0])


def _verify_standard(body: str, headers: dict[str, str], secrets: tuple[Webhook, ...]) -> int:
    """The webhook-timestamp, once a secret's signature matched (standardwebhooks checks the tolerance)."""
    if not secrets:
        raise SigningSecretUnavailable("no Standard Webhooks signing secret is configured")
    signed = {name: headers.get(name, "") for name in STANDARD_HEADERS}
    missing = [name for name, value in signed.items() if not value]
    if missing:
        raise InvalidSignature(f"missing {', '.join(missing)} header")
    if not _SECONDS.fullmatch(signed["webhook-timestamp"]):
        # standardwebhooks would take any float ("1e9", "nan"); the scheme sends whole seconds.
        raise MalformedSignature("the webhook-timestamp header is not a number of seconds")
    for verifier in secrets:
        try:
            verifier.verify(body, signed, json_parse=False)
            return int(signed["webhook-timestamp"])
        except WebhookVerificationError as exc:
            if "timestamp too" in str(exc):
                raise InvalidSignature(_OUTSIDE_TOLERANCE) from None
        except (ValueError, binascii.Error):
            # standardwebhooks splits "v1,<base64>" and decodes it without guarding either step.
            raise MalformedSignature(
                "the webhook-signature header is malformed (expected space-separated v1,<base64>)"
            ) from None
    raise InvalidSignature(_NO_MATCH)
