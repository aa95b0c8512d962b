"""The operators' tier-change email: readable text, what changed, partner-supplied text made safe."""

from datetime import UTC, datetime

from core.billing.models import BillingEvent, TierAction
from core.billing.notice import TierChangeNotice, body, subject
from core.models import PartnerStatus
from core.tier_policy import TierPolicy

POLICIES = {
    "free": TierPolicy(
        models=("gpt-4o-mini",),
        token_budget=50_000,
        default_max_tokens=256,
        rate_limit=5,
        burst_limit=10,
        quota_limit=1000,
        quota_period="DAY",
    ),
    "pro": TierPolicy(
        models=("gpt-4o-mini", "gpt-4o"),
        token_budget=0,
        default_max_tokens=1024,
        rate_limit=50,
        burst_limit=100,
        quota_limit=100_000,
        quota_period="MONTH",
    ),
}
EVENT = BillingEvent(
    scheme="stripe",
    event_id="evt_1",
    event_type="customer.subscription.updated",
    occurred_at_us=1_795_511_700_000_000,
    action=TierAction.SUBSCRIBE,
    tier="pro",
    partner_id="p_1",
)


def notice(name: str = "Acme AI", **changes: object) -> TierChangeNotice:
    values: dict[str, object] = {
        "event": EVENT,
        "partner_id": "p_1",
        "partner_name": name,
        "previous_tier": "free",
        "previous_status": PartnerStatus.ACTIVE,
        "tier": "pro",
        "status": PartnerStatus.ACTIVE,
        "applied_at": datetime(2026, 11, 24, 9, 15, tzinfo=UTC),
        "remaining": 99_960,
        **changes,
    }
    return TierChangeNotice(**values)  # type: ignore[arg-type]


def test_an_upgrade_reads_as_an_email_listing_what_changed() -> None:
    # Given an upgrade from free to pro / When its email is written
    text = body(notice(), POLICIES)

    # Then it names the partner and both tiers, and lists each limit before and after, and the models
    assert text.splitlines()[0] == "Acme AI (partner p_1) moved from the free tier to the pro tier."
    assert "  Requests: 1000 a day -> 100000 a month" in text
    assert "  Rate:     5 requests/s (burst 10) -> 50 requests/s (burst 100)" in text
    assert "  Tokens:   50000 a day -> unlimited" in text
    assert "  Models:   gpt-4o-mini -> gpt-4o-mini, gpt-4o" in text
    assert "99960 requests left in the pro quota" in text
    assert "evt_1" in text
    assert "Help:" in text
    assert subject(notice()) == "Tier change: p_1 free -> pro"


def test_a_cancellation_says_the_key_is_disabled_and_lists_no_limits() -> None:
    text = body(notice(tier="free", previous_tier="free", status=PartnerStatus.DISABLED, remaining=None), POLICIES)

    assert "cancelled: its key on the free tier is disabled" in text
    assert "Requests:" not in text
    assert subject(notice(tier="free", status=PartnerStatus.DISABLED)) == "Tier change: p_1 disabled"


def test_control_characters_bidi_overrides_and_ansi_escapes_in_the_name_never_reach_the_email() -> None:
    # Given a partner name with a forged header line, an ANSI escape and a bidi override
    hostile = "Acme\r\nBcc: victim@example.com\x1b[31m\u202eevil"

    # When the email is written
    text = body(notice(name=hostile), POLICIES)

    # Then the first line holds the name on one line, with none of those characters
    first = text.splitlines()[0]
    assert first.startswith("Acme Bcc: victim@example.com [31m evil (partner p_1)")
    assert not any(char in text for char in "\r\x1b\u202e")
