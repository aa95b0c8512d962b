"""What operators and partners read: subjects SNS accepts for email, readable bodies that agree with their
subjects, no control or bidi characters from partner names, filterable attributes, digests that list every
crossing."""

import re
from datetime import UTC, datetime

import pytest

from core.email_text import email_safe
from core.models import Partner, PartnerStatus
from core.periods import QuotaPeriod, period_bounds
from core.quota.alerts import (
    ALERT_KIND,
    DIGEST_KIND,
    Message,
    QuotaAlert,
    digest_messages,
    operator_message,
    partner_email,
)
from core.quota.standing import PlanUsage, TokenCounters, standing

AS_OF = datetime(2026, 3, 11, tzinfo=UTC)


def partner(name: str = "Acme AI", partner_id: str = "p_1", created_at: str = "2026-03-01T00:00:00+00:00") -> Partner:
    return Partner(
        partner_id=partner_id,
        name=name,
        email="dev@acme.example",
        tier="free",
        api_key_id="k1",
        key_prefix="AbCd",
        status=PartnerStatus.ACTIVE,
        created_at=created_at,
        updated_at=created_at,
        alert_emails=True,
    )


def alert(
    threshold: int = 80,
    used: int = 800,
    who: Partner | None = None,
    key: str = "k1",
    *,
    limit: int = 1000,
    period: QuotaPeriod = "MONTH",
    as_of: datetime = AS_OF,
    tokens: int | None = None,
    token_budget: int | None = None,
) -> QuotaAlert:
    item = standing(
        PlanUsage(key, used, limit - used),
        tier="free",
        period=period,
        bounds=period_bounds(period, as_of),
        as_of=as_of,
        plan_limit=limit,
        tokens=TokenCounters(prompt_tokens=tokens) if tokens is not None else None,
        token_budget=token_budget,
    )
    return QuotaAlert(item, threshold, who if who is not None else partner())


def percentages(text: str) -> set[str]:
    return set(re.findall(r"(\d+(?:\.\d+)?)%", text))


def runs_out_line(body: str) -> str:
    return next(line for line in body.splitlines() if line.startswith("Requests run out:"))


def assert_sns_email_subject(subject: str) -> None:
    # SNS: ASCII, starts with a letter, number or punctuation, no line breaks or control characters, < 100.
    assert subject.isascii()
    assert subject[0].isalnum() or not subject[0].isspace()
    assert all(32 <= ord(char) < 127 for char in subject)
    assert len(subject) < 100


def test_operator_message_reads_as_an_email_with_what_to_do() -> None:
    # Given a key at 80% of its quota
    message = operator_message(alert())

    # Then the subject says who, which tier, how much
    assert message.subject == "Quota 80% used: Acme AI (free)"
    assert_sns_email_subject(message.subject)
    # And the body greets, says what happened with numbers and units, when it resets, and what to do
    body = message.body
    for expected in (
        "Hello,",
        "Acme AI (partner p_1) on the free tier has used 80% of its request quota this month",
        "800 of 1,000 requests used (80%), 200 left",
        "dev@acme.example",
        "2026-04-01 00:00 UTC, in 21 days",
        "around 2026-03-13 12:00 UTC",
        "up to 30 minutes behind",
        "update-usage",
        "billing",
    ):
        assert expected in body
    # And subscribers can filter on tier, threshold (a number) and partner
    assert message.attributes == {"kind": ALERT_KIND, "tier": "free", "threshold": 80, "partner_id": "p_1"}


@pytest.mark.parametrize(
    ("used", "threshold", "shown"),
    [
        (8_796, 80, 87),  # past the threshold: the figure reached, not the threshold's
        (9_996, 95, 99),  # 99.96% with 4 left: not "100%" (nor "100.0%") while requests are still admitted
        (5_000, 50, 50),
        (10_000, 100, 100),
    ],
)
def test_subject_and_body_give_the_same_percentage(used: int, threshold: int, shown: int) -> None:
    # Given a key of a 10,000-request quota that reached `threshold`
    item = alert(threshold=threshold, used=used, limit=10_000)

    for message in (operator_message(item), partner_email(item)):
        # Then the subject and the body give one figure, floored, besides the threshold named as such
        assert percentages(message.subject) == {str(shown)}
        assert percentages(message.body) <= {str(shown), str(threshold)}
        assert f"{shown}%" in message.body.split("\n\n")[1]


def test_a_token_budget_alert_says_so_in_subject_and_body() -> None:
    # Given a key at 30% of its requests but 96% of its token budget
    item = alert(threshold=95, used=300, tokens=96_000, token_budget=100_000)

    operator, email = operator_message(item), partner_email(item)

    # Then both name the token budget and its figure, not the request quota's
    assert operator.subject == "Token budget 96% used: Acme AI (free)"
    assert "has used 96% of its token budget" in operator.body
    assert "96,000 of 100,000 tokens used (96%)" in operator.body
    assert "300 of 1,000 requests used (30%)" in operator.body
    assert email.subject == "You have used 96% of your free plan's token budget"
    assert "96% of its token budget" in email.body


@pytest.mark.parametrize(
    ("as_of", "period", "created_at", "expected"),
    [
        # 800 of 1,000 in the first five minutes of a daily quota: no time can be claimed
        (datetime(2026, 3, 11, 0, 5, tzinfo=UTC), "DAY", "2026-03-01T00:00:00+00:00", "too early to tell"),
        # Mid-month, but the key was created ten minutes ago
        (AS_OF, "MONTH", "2026-03-10T23:50:00+00:00", "too early to tell"),
        # 800 used by noon (66.7 an hour): 200 left is three hours, a time
        (datetime(2026, 3, 11, 12, tzinfo=UTC), "DAY", "2026-03-01T00:00:00+00:00", "around 2026-03-11 15:00 UTC"),
    ],
)
def test_the_projection_claims_a_time_only_when_the_usage_supports_one(
    as_of: datetime, period: QuotaPeriod, created_at: str, expected: str
) -> None:
    item = alert(period=period, as_of=as_of, who=partner(created_at=created_at))

    for message in (operator_message(item), partner_email(item)):
        line = runs_out_line(message.body)
        assert expected in line
        if "too early" in expected:
            assert not re.search(r"\d\d:\d\d", line)


def test_a_projection_within_the_hour_is_very_soon() -> None:
    # Given 960 of 1,000 used by noon of a daily quota: 40 left is half an hour
    item = alert(threshold=95, used=960, period="DAY", as_of=datetime(2026, 3, 11, 12, tzinfo=UTC))

    line = runs_out_line(partner_email(item).body)

    assert "very soon" in line
    assert not re.search(r"\d\d:\d\d", line)


HOSTILE_NAMES = [
    "Evil Co\r\nBcc: victim@example.com\r\n\r\nFree money",  # header injection through the subject
    "Nul\x00Co",
    "\x1b[31mRed\x1b[0m Co",  # ANSI colour
    "Good \u202eoC liveE",  # right-to-left override
    "\u2066Iso\u2069 \u200fMarks\u200e Co\x7f\x85",
]
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_clean(message: Message) -> None:
    assert_sns_email_subject(message.subject)
    assert "\n" not in message.subject and not UNSAFE.search(message.subject)
    # The body keeps its own line breaks (LF only), and nothing else that is not text
    assert not UNSAFE.search(message.body) and "\r" not in message.body
    assert not any(line.startswith(("Bcc:", "Free money")) for line in message.body.splitlines())


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_partner_names_reach_no_email_raw(name: str) -> None:
    # Given a partner whose name carries line breaks, NUL, escapes or bidi controls
    item = alert(who=partner(name=name))

    # When every message about it is written
    messages = [operator_message(item), partner_email(item), digest_messages([item], per_message=10)[0][0]]

    # Then no subject or body carries them, and the name still shows, cleaned
    for message in messages:
        assert_clean(message)
    assert f"Hello {email_safe(name)}," in partner_email(item).body
    assert email_safe(name) in operator_message(item).body


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
    assert message.subject.startswith("Quota 80% used: ")
    assert message.subject.endswith("(free)")


def test_a_non_ascii_name_falls_back_to_the_partner_id() -> None:
    assert operator_message(alert(who=partner(name="模型公司"))).subject == "Quota 80% used: p_1 (free)"


def test_an_exhausted_key_says_so() -> None:
    message = operator_message(alert(threshold=100, used=1000))

    assert "now: the quota is used up until the reset" in runs_out_line(message.body)


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
        assert message.body.count("\n- Partner ") == len(listed)
        assert message.body.count("80% of its request quota (800 of 1,000 requests)") == len(listed)
        assert message.attributes["kind"] == DIGEST_KIND
        assert message.attributes["tier"] == ["free"]
        assert message.attributes["threshold"] == ["80"]
        assert len(message.attributes["partner_id"]) == len(listed)


def test_partner_email_reads_as_an_email_and_never_holds_the_key_value() -> None:
    # Given a partner's key at 80% of its monthly quota
    message = partner_email(alert())

    # Then it greets, says what happened with numbers and units, when it resets, what happens then, what to do
    assert message.subject == "You have used 80% of your free plan's request quota"
    for expected in (
        "Hello Acme AI,",
        "Your API key starting AbCd... has used 80% of its request quota on the free plan this month.",
        "800 of 1,000 requests used (80%), 200 left",
        "2026-04-01 00:00 UTC, in 21 days",
        "HTTP 429",
        "upgrade",
        "GET /v1/usage",
        "up to 30 minutes behind",
        "you asked for quota alerts",
    ):
        assert expected in message.body
    # And only the key's first characters, never the partner id nor the operators' commands
    assert "p_1" not in message.body and "update-usage" not in message.body


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        ("support@acme-api.example", "write to support@acme-api.example"),
        ("https://acme-api.example/help", "see https://acme-api.example/help"),
        ("", "contact the team that gave you your API key"),
    ],
)
def test_partner_email_says_how_to_upgrade_or_get_help(contact: str, expected: str) -> None:
    message = partner_email(alert(), support_contact=contact)

    what_to_do = message.body[message.body.index("What you can do") :]
    assert expected in what_to_do
    assert "upgrade" in what_to_do
