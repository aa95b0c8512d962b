"""What operators and partners read: subjects SNS accepts for email, readable bodies, filterable attributes,
digests that list every crossing."""

from datetime import UTC, datetime

import pytest

from core.models import Partner, PartnerStatus
from core.periods import period_bounds
from core.quota import PlanUsage, standing
from core.quota_alerts import ALERT_KIND, DIGEST_KIND, QuotaAlert, digest_messages, operator_message, partner_email

AS_OF = datetime(2026, 3, 11, tzinfo=UTC)


def partner(name: str = "Acme AI", partner_id: str = "p_1") -> Partner:
    return Partner(
        partner_id=partner_id,
        name=name,
        email="dev@acme.example",
        tier="free",
        api_key_id="k1",
        key_prefix="AbCd",
        status=PartnerStatus.ACTIVE,
        created_at="2026-03-01T00:00:00+00:00",
        updated_at="2026-03-01T00:00:00+00:00",
        alert_emails=True,
    )


def alert(threshold: int = 80, used: int = 800, who: Partner | None = None, key: str = "k1") -> QuotaAlert:
    item = standing(
        PlanUsage(key, used, 1000 - used),
        tier="free",
        period="MONTH",
        bounds=period_bounds("MONTH", AS_OF),
        as_of=AS_OF,
        plan_limit=1000,
    )
    return QuotaAlert(item, threshold, who if who is not None else partner())


def assert_sns_email_subject(subject: str) -> None:
    # SNS: ASCII, starts with a letter, number or punctuation, no line breaks or control characters, < 100.
    assert subject.isascii()
    assert subject[0].isalnum() or not subject[0].isspace()
    assert all(32 <= ord(char) < 127 for char in subject)
    assert len(subject) < 100


def test_operator_message_names_partner_tier_and_threshold() -> None:
    # Given a key at 80% of its quota
    message = operator_message(alert())

    # Then the subject says who, which tier, which threshold
    assert message.subject == "Quota 80% reached: Acme AI (free)"
    assert_sns_email_subject(message.subject)
    # And the body says what a person needs to act
    body = message.body
    for expected in (
        "Acme AI (partner p_1) on the free tier has reached 80% of its request quota",
        "800 / 1000 (80.0%), 200 remaining",
        "Resets at:            2026-04-01 00:00 UTC",
        "Projected exhaustion: 2026-03-13 12:00 UTC at the current rate",
        "update-usage",
        "billing",
    ):
        assert expected in body
    # And subscribers can filter on tier, threshold (a number) and partner
    assert message.attributes == {"kind": ALERT_KIND, "tier": "free", "threshold": 80, "partner_id": "p_1"}


@pytest.mark.parametrize(
    "name",
    [
        "Crème Brûlée \uff2d\uff4f\uff44\uff45\uff4c\uff53 GmbH",  # accents, full-width letters
        "A" * 300,
        "line\nbreak\tand\x07bell",
        "模型公司",  # nothing survives folding to ASCII: the partner id stands in
    ],
)
def test_subjects_are_ascii_one_line_and_short_whatever_the_name(name: str) -> None:
    message = operator_message(alert(who=partner(name=name)))

    assert_sns_email_subject(message.subject)
    assert message.subject.startswith("Quota 80% reached: ")
    assert message.subject.endswith("(free)")


def test_a_non_ascii_name_falls_back_to_the_partner_id() -> None:
    assert operator_message(alert(who=partner(name="模型公司"))).subject == "Quota 80% reached: p_1 (free)"


def test_an_exhausted_key_says_so() -> None:
    message = operator_message(alert(threshold=100, used=1000))

    assert "Projected exhaustion: now: the quota is used up until the reset" in message.body


def test_digest_lists_every_crossing_in_chunks() -> None:
    # Given 250 crossings in one run
    alerts = [alert(key=f"k{n:03}", who=partner(name=f"Partner {n}", partner_id=f"p_{n}")) for n in range(250)]

    # When digested 100 to a message
    messages = digest_messages(alerts, per_message=100)

    # Then three messages list all 250, each numbered in its subject
    assert [len(listed) for _, listed in messages] == [100, 100, 50]
    assert {item.standing.api_key_id for _, listed in messages for item in listed} == {
        a.standing.api_key_id for a in alerts
    }
    for number, (message, listed) in enumerate(messages, start=1):
        assert_sns_email_subject(message.subject)
        assert message.subject == f"Quota alerts: 250 keys crossed a threshold ({number}/3)"
        assert message.body.count("\n- 80% free: ") == len(listed)
        assert message.attributes["kind"] == DIGEST_KIND
        assert message.attributes["tier"] == ["free"]
        assert message.attributes["threshold"] == ["80"]
        assert len(message.attributes["partner_id"]) == len(listed)


def test_partner_email_never_holds_the_key_value_only_its_prefix() -> None:
    message = partner_email(alert())

    assert message.subject == "You have used 80% of your free quota"
    assert "Hello Acme AI" in message.body
    assert "starting AbCd..." in message.body
    assert "800 / 1000" in message.body
    assert "upgrade your plan" in message.body
