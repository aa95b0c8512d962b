"""The billing webhook's settings, read from the environment the template sets."""

import pytest
from pydantic import ValidationError

from core.billing.settings import BillingWebhookSettings
from core.signup.settings import SignupSettings

BASE = {
    "STACK_NAME": "stack",
    "PARTNERS_TABLE": "partners",
    "IDEMPOTENCY_TABLE": "idempotency",
    "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook",
    "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
    "METERING_TABLE": "metering",
}


def settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> BillingWebhookSettings:
    for name, value in {**BASE, **values}.items():
        monkeypatch.setenv(name, value)
    return BillingWebhookSettings()


def test_the_template_defaults_give_disable_key_and_no_price_map(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(monkeypatch, STRIPE_PRICE_TIERS="", CANCELLATION_MODE="disable-key", SELF_SERVICE_TIERS="free")

    assert (loaded.cancellation_mode, loaded.stripe_price_tiers, loaded.free_tier) == ("disable-key", {}, "free")


def test_the_price_map_and_the_free_tier_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings(
        monkeypatch, STRIPE_PRICE_TIERS="price_1=pro, price_2=enterprise", SELF_SERVICE_TIERS="basic,free"
    )

    assert loaded.stripe_price_tiers == {"price_1": "pro", "price_2": "enterprise"}
    assert loaded.free_tier == "basic"


@pytest.mark.parametrize(("name", "value"), [("STRIPE_PRICE_TIERS", "price_1"), ("CANCELLATION_MODE", "delete-key")])
def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        settings(monkeypatch, **{name: value})


@pytest.mark.parametrize("tiers", ["free", " basic , free ", "trial,free,"])
def test_signup_and_the_webhook_read_self_service_tiers_alike(monkeypatch: pytest.MonkeyPatch, tiers: str) -> None:
    # Given one SELF_SERVICE_TIERS for the whole stack
    webhook = settings(monkeypatch, SELF_SERVICE_TIERS=tiers)
    # When signup reads it too / Then both see the same tiers, and the same free tier
    signup = SignupSettings()
    assert (webhook.self_service_tiers, webhook.free_tier) == (signup.self_service_tiers, signup.free_tier)


def test_settings_composed_from_mixins_stay_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings composed from several mixins / When one is changed / Then pydantic refuses
    loaded = settings(monkeypatch)
    with pytest.raises(ValidationError):
        loaded.secret_cache_seconds = 1  # type: ignore[misc]
    # and the webhook keeps its own default for re-reading its signing secrets
    assert loaded.secret_cache_seconds == 60
