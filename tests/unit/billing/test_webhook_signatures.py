"""Webhook signature verification: deliveries signed by the `stripe` and `standardwebhooks` packages' own
helpers, verified (or refused) before anything reads the body."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.billing.signatures import SigningSecrets, scheme_of, verify
from core.errors import InvalidSignature, MalformedSignature, SigningSecretUnavailable
from offline.webhook_secrets import generate_signing_secret
from tests.webhook_events import standard_headers, stripe_headers

BODY = '{"id":"evt_1","type":"customer.subscription.updated","created":1795511700,"data":{"object":{}}}'
STRIPE_SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuv"
STANDARD_SECRET = generate_signing_secret()
SECRETS = SigningSecrets.from_json({"stripe": STRIPE_SECRET, "standard": [STANDARD_SECRET]})


def test_a_stripe_delivery_verifies_over_its_raw_body() -> None:
    delivery = verify(BODY.encode(), stripe_headers(BODY, STRIPE_SECRET), SECRETS)

    assert (delivery.scheme, delivery.body, delivery.message_id) == ("stripe", BODY, None)


def test_a_standard_webhooks_delivery_verifies_and_keeps_its_message_id() -> None:
    headers = standard_headers(BODY, STANDARD_SECRET, message_id="msg_42")

    delivery = verify(BODY.encode(), headers, SECRETS)

    assert (delivery.scheme, delivery.message_id) == ("standard", "msg_42")


def test_header_names_are_case_insensitive() -> None:
    headers = {name.upper(): value for name, value in standard_headers(BODY, STANDARD_SECRET).items()}

    assert verify(BODY.encode(), headers, SECRETS).scheme == "standard"


@pytest.mark.parametrize("scheme", ["stripe", "standard"])
def test_any_active_secret_verifies_during_a_rotation(scheme: str) -> None:
    old, new = generate_signing_secret(), generate_signing_secret()
    secrets = SigningSecrets.from_json({scheme: [new, old]})
    sign = stripe_headers if scheme == "stripe" else standard_headers

    for secret in (old, new):
        assert verify(BODY.encode(), sign(BODY, secret), secrets).scheme == scheme


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda: stripe_headers(BODY, "whsec_someone_else"), "does not match"),
        (lambda: stripe_headers(BODY.replace("evt_1", "evt_2"), STRIPE_SECRET), "does not match"),
        (lambda: stripe_headers(BODY, STRIPE_SECRET, int(time.time()) - 330), "outside the 5-minute tolerance"),
        (lambda: stripe_headers(BODY, STRIPE_SECRET, int(time.time()) + 330), "outside the 5-minute tolerance"),
        (lambda: {"Stripe-Signature": "t=abc,v1=00"}, "malformed"),
        (lambda: {"Stripe-Signature": f"t={int(time.time())}"}, "malformed"),
        (lambda: {"Stripe-Signature": ""}, "empty"),
        (lambda: standard_headers(BODY, generate_signing_secret()), "does not match"),
        (
            lambda: standard_headers(BODY, STANDARD_SECRET, timestamp=datetime.now(UTC) - timedelta(seconds=310)),
            "outside the 5-minute tolerance",
        ),
        (
            lambda: standard_headers(BODY, STANDARD_SECRET, timestamp=datetime.now(UTC) + timedelta(seconds=310)),
            "outside the 5-minute tolerance",
        ),
        (lambda: {**standard_headers(BODY, STANDARD_SECRET), "webhook-timestamp": "soon"}, "not a number"),
        (lambda: {**standard_headers(BODY, STANDARD_SECRET), "webhook-signature": "v1,not-base64!"}, "malformed"),
        (lambda: {**standard_headers(BODY, STANDARD_SECRET), "webhook-signature": "v2,AAAA"}, "does not match"),
        (lambda: {"webhook-id": "msg_1"}, "missing webhook-timestamp, webhook-signature"),
        (lambda: {}, "missing signature"),
        (lambda: {"X-Signature": "sha256=abc"}, "missing signature"),
        (lambda: {**stripe_headers(BODY, STRIPE_SECRET), **standard_headers(BODY, STANDARD_SECRET)}, "not both"),
    ],
)
def test_bad_signatures_are_refused_with_a_clear_reason(
    make_headers: Callable[[], dict[str, str]], reason: str
) -> None:
    # Signed when the test runs, not when it is collected: timestamps are relative to now.
    headers = make_headers()

    with pytest.raises(InvalidSignature) as refused:
        verify(BODY.encode(), headers, SECRETS)

    assert reason in refused.value.message


def test_a_body_that_is_not_utf8_cannot_verify() -> None:
    with pytest.raises(InvalidSignature, match="not UTF-8"):
        verify(b"\xff\xfe{}", stripe_headers("{}", STRIPE_SECRET), SECRETS)


@pytest.mark.parametrize(
    ("configured", "headers"),
    [
        ({"stripe": [], "standard": [STANDARD_SECRET]}, stripe_headers(BODY, STRIPE_SECRET)),
        ({"stripe": STRIPE_SECRET, "standard": ""}, standard_headers(BODY, STANDARD_SECRET)),
        ({"stripe": STRIPE_SECRET, "standard": ["whsec_"]}, standard_headers(BODY, STANDARD_SECRET)),
    ],
)
def test_a_scheme_without_a_usable_secret_fails_closed(configured: dict[str, object], headers: dict[str, str]) -> None:
    with pytest.raises(SigningSecretUnavailable):
        verify(BODY.encode(), headers, SigningSecrets.from_json(configured))


def test_the_scheme_is_chosen_by_the_headers_present() -> None:
    assert scheme_of({"Stripe-Signature": "t=1,v1=0"}) == "stripe"
    assert scheme_of({"webhook-id": "msg_1"}) == "standard"
    with pytest.raises(InvalidSignature):
        scheme_of({"Content-Type": "application/json"})


# --- One timestamp: the t= the signature covers is the one the tolerance reads -----------------------------


NOW = 1_795_511_700


def signed_stripe_header(timestamp: int = NOW) -> str:
    return stripe_headers(BODY, STRIPE_SECRET, timestamp)["Stripe-Signature"]


@pytest.mark.parametrize(
    "header",
    [
        # Signed for tomorrow; a second t= of now must not pass the "ahead" check in its place.
        f"{signed_stripe_header(NOW + 86_400)},t={NOW}",
        f"t={NOW},{signed_stripe_header(NOW + 86_400)}",
        f"{signed_stripe_header()},t={NOW}=x",
        signed_stripe_header().replace(f"t={NOW}", f"t={NOW}=x"),
        f"{signed_stripe_header()},t=abc",
        f"{signed_stripe_header()},t=",
        signed_stripe_header().replace(f"t={NOW}", f"t= {NOW}"),
        signed_stripe_header().replace(f"t={NOW}", "t=١٧٩٥٥١١٧٠٠"),
        signed_stripe_header().split(",")[1],
        f"t={NOW},v1",
    ],
)
def test_a_stripe_header_without_exactly_one_numeric_timestamp_is_malformed(header: str) -> None:
    # Given a Stripe-Signature header with several t=, or one that is not a number of seconds
    # When it is verified
    with pytest.raises(MalformedSignature) as refused:
        verify(BODY.encode(), {"Stripe-Signature": header}, SECRETS, clock=lambda: NOW)

    # Then it is refused as malformed (400), not as a bad signature and not with an unexpected error
    assert "Stripe-Signature header is malformed" in refused.value.message


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(300, True), (301, False), (-300, True), (-301, False), (0, True)],
)
def test_stripe_timestamps_are_accepted_within_exactly_300_seconds_either_way(age: int, accepted: bool) -> None:
    # Given a delivery signed `age` seconds before now (negative: ahead of now)
    header = {"Stripe-Signature": signed_stripe_header(NOW - age)}

    # When it is verified at NOW
    if accepted:
        # Then within 300 s it passes, and the delivery keeps the timestamp it was signed with
        assert verify(BODY.encode(), header, SECRETS, clock=lambda: NOW).signed_at == NOW - age
        return
    with pytest.raises(InvalidSignature, match="outside the 5-minute tolerance"):
        verify(BODY.encode(), header, SECRETS, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("1795511700.5", "not a number of seconds"),
        ("1e9", "not a number of seconds"),
        ("nan", "not a number of seconds"),
        ("", "missing webhook-timestamp"),
    ],
)
def test_a_standard_webhooks_timestamp_must_be_whole_seconds(timestamp: str, reason: str) -> None:
    headers = {**standard_headers(BODY, STANDARD_SECRET), "webhook-timestamp": timestamp}

    with pytest.raises(InvalidSignature, match=reason):
        verify(BODY.encode(), headers, SECRETS)


def test_a_standard_webhooks_delivery_keeps_the_timestamp_it_was_signed_with() -> None:
    at = datetime.now(UTC) - timedelta(seconds=42)

    delivery = verify(BODY.encode(), standard_headers(BODY, STANDARD_SECRET, timestamp=at), SECRETS)

    assert delivery.signed_at == int(at.timestamp())
