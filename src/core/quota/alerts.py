"""Quota alerts as people read them: the operators' message (one per crossing, or a digest when many keys
cross in one run) and the partner's own email. Plain text, no AWS.

One figure per alert: the share used of what crossed the threshold, floored to a whole percent (so it never
shows a threshold not reached, nor 100% while requests are still admitted), the same in subject and body.
Partner-supplied text goes through `email_safe` before it reaches a body, and is folded to ASCII for subjects:
SNS email subjects must be ASCII, start with a letter, number or punctuation mark, hold no line breaks or
control characters, and be under 100 characters.
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.email_text import email_safe
from core.messages import Message
from core.models import Partner
from core.periods import QuotaPeriod
from core.quota.standing import Outlook, Projection, QuotaStanding

MAX_SUBJECT_LENGTH = 99

ALERT_KIND = "quota-alert"
DIGEST_KIND = "quota-digest"

_THIS_PERIOD: dict[QuotaPeriod, str] = {"DAY": "today", "WEEK": "this week", "MONTH": "this month"}
_LAG = (
    "Usage data can be up to 30 minutes behind (API Gateway still enforces the quota in real time), "
    "so this alert may come late after a burst."
)


@dataclass(frozen=True)
class QuotaAlert:
    """A key reached `threshold` percent of its quota (or token budget) for the first time this period."""

    standing: QuotaStanding
    threshold: int
    partner: Partner | None  # None: the key has no partner record (a key made outside signup)

    @property
    def partner_id(self) -> str:
        return self.partner.partner_id if self.partner else (self.standing.partner_id or "unknown")

    @property
    def partner_name(self) -> str:
        """Safe to put in an email body."""
        return email_safe(self.partner.name) if self.partner else f"key {self.standing.api_key_id}"

    @property
    def requests_reached(self) -> bool:
        return self.standing.request_percent >= self.threshold

    @property
    def tokens_reached(self) -> bool:
        return (self.standing.token_percent or 0) >= self.threshold

    @property
    def measure(self) -> str:
        if self.requests_reached and self.tokens_reached:
            return "request quota and token budget"
        return "token budget" if self.tokens_reached else "request quota"

    @property
    def percent(self) -> int:
        """The figure subject and body give: the highest floored share among what reached the threshold."""
        shares = [self.standing.request_percent] if self.requests_reached else []
        if self.tokens_reached:
            shares.append(self.standing.token_percent or 0)
        return max(shares, default=self.standing.request_percent)

    @property
    def projection(self) -> Projection:
        return self.standing.projection(active_since=_created_at(self.partner))


def operator_message(alert: QuotaAlert) -> Message:
    standing = alert.standing
    subject = _subject(
        f"{_subject_measure(alert)} {alert.percent}% used:",
        alert.partner_name,
        f"({standing.tier})",
        fallback=alert.partner_id,
    )
    lines = [
        "Hello,",
        "",
        f"{alert.partner_name} (partner {alert.partner_id}) on the {standing.tier} tier has used {alert.percent}% "
        f"of its {alert.measure} {_THIS_PERIOD[standing.period]}, past the {alert.threshold}% alert threshold.",
        "",
        *_figures(alert),
        f"Partner:           {_partner_line(alert)}",
        f"API key id:        {standing.api_key_id}",
        "",
        "What you can do:",
        "- Upgrade the partner to a higher tier through your billing system (the tier-change webhook moves "
        "the same key to the new plan and carries this period's usage over).",
        f"- Or grant an extension for this period only: aws apigateway update-usage --usage-plan-id <{standing.tier} "
        f"plan id> --key-id {standing.api_key_id} --patch-operations op=replace,path=/remaining,value=<requests>",
        "",
        _LAG,
        f"One alert per key, threshold and quota period: the next for this key comes at a higher threshold "
        f"or after the reset at {_time(standing.resets_at)}.",
    ]
    return Message(
        subject=subject,
        body="\n".join(lines),
        attributes={
            "kind": ALERT_KIND,
            "tier": standing.tier,
            "threshold": alert.threshold,
            "partner_id": alert.partner_id,
        },
    )


def digest_messages(alerts: Sequence[QuotaAlert], per_message: int) -> list[tuple[Message, list[QuotaAlert]]]:
    """Many crossings in one run: a few messages listing them all (each with the alerts it lists), instead of
    one each (SNS suspends an email endpoint that receives more than 10 messages a second)."""
    ordered = sorted(alerts, key=lambda alert: (-alert.threshold, alert.standing.tier, alert.partner_name))
    chunks = [ordered[start : start + per_message] for start in range(0, len(ordered), per_message)]
    messages = []
    for number, chunk in enumerate(chunks, start=1):
        part = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
        subject = _subject(f"Quota alerts: {len(alerts)} keys crossed a threshold{part}")
        lines = [
            "Hello,",
            "",
            f"{len(alerts)} keys reached a quota alert threshold for the first time this period"
            f"{'; this message lists ' + str(len(chunk)) + ' of them' if len(chunks) > 1 else ''}.",
            "",
        ]
        for alert in chunk:
            standing = alert.standing
            lines.append(
                f"- {alert.partner_name} (partner {alert.partner_id}, key {standing.api_key_id}), {standing.tier} "
                f"tier: {alert.percent}% of its {alert.measure} ({_requests(standing)}{_tokens_inline(standing)}), "
                f"{alert.threshold}% threshold; requests run out: {_exhaustion(alert.projection)}; "
                f"resets {_time(standing.resets_at)}"
            )
        lines += [
            "",
            "Upgrade a partner through your billing system, or grant an extension for this period with "
            "aws apigateway update-usage (replace /remaining).",
            "",
            _LAG,
        ]
        messages.append(
            (
                Message(
                    subject=subject,
                    body="\n".join(lines),
                    attributes={
                        "kind": DIGEST_KIND,
                        "tier": sorted({alert.standing.tier for alert in chunk}),
                        "threshold": sorted({str(alert.threshold) for alert in chunk}, key=int),
                        "partner_id": sorted({alert.partner_id for alert in chunk}),
                    },
                ),
                chunk,
            )
        )
    return messages


def partner_email(alert: QuotaAlert, support_contact: str = "") -> Message:
    """The partner's own alert (they opted in at signup). Never holds a key value: only its first characters.
    `support_contact`: an email address or URL for upgrades and help (empty: a generic sentence)."""
    standing = alert.standing
    assert alert.partner is not None
    key = f"Your API key starting {alert.partner.key_prefix}..." if alert.partner.key_prefix else "Your API key"
    name = alert.partner_name
    lines = [
        f"Hello {name}," if name else "Hello,",
        "",
        f"{key} has used {alert.percent}% of its {alert.measure} on the {standing.tier} plan "
        f"{_THIS_PERIOD[standing.period]}.",
        "",
        *_figures(alert),
        "",
        f"When the {'quota or the token budget' if standing.token_budget else 'quota'} is used up, the API refuses "
        f"requests with HTTP 429 until the reset at {_time(standing.resets_at)}. GET /v1/usage with your key shows "
        "these figures at any time.",
        "",
        "What you can do:",
        f"- To upgrade to a plan with a larger quota, or to ask for an extension for this period, "
        f"{contact_sentence(support_contact)}.",
        "- Or spread your remaining requests until the reset.",
        "",
        _LAG,
        "",
        "You get these emails because you asked for quota alerts when you signed up.",
    ]
    return Message(
        subject=_subject(f"You have used {alert.percent}% of your {standing.tier} plan's {alert.measure}"),
        body="\n".join(lines),
        attributes={},
    )


def _figures(alert: QuotaAlert) -> list[str]:
    standing = alert.standing
    lines = [
        f"Requests:          {_requests(standing)} used ({standing.request_percent}%), {standing.remaining:,} left"
    ]
    if standing.token_budget and standing.tokens_used is not None:
        lines.append(
            f"Tokens:            {standing.tokens_used:,} of {standing.token_budget:,} tokens used "
            f"({standing.token_percent}%)"
        )
    lines += [
        f"Quota period:      {_period(standing.period)}, {_time(standing.period_start)} to {_time(standing.resets_at)}",
        f"Resets:            {_time(standing.resets_at)}, {_from_now(standing.as_of, standing.resets_at)}",
        f"Requests run out:  {_exhaustion(alert.projection)}",
        f"Read at:           {_time(standing.as_of)}",
    ]
    return lines


def _requests(standing: QuotaStanding) -> str:
    return f"{standing.consumed:,} of {standing.limit:,} requests"


def _tokens_inline(standing: QuotaStanding) -> str:
    if not standing.token_budget or standing.tokens_used is None:
        return ""
    return f"; {standing.tokens_used:,} of {standing.token_budget:,} tokens"


def _subject_measure(alert: QuotaAlert) -> str:
    return "Token budget" if alert.measure == "token budget" else "Quota"


def _partner_line(alert: QuotaAlert) -> str:
    if alert.partner is None:
        return f"none on record for key {alert.standing.api_key_id} (made outside signup)"
    alerts = "gets its own alert emails" if alert.partner.alert_emails else "did not ask for alert emails"
    return f"{alert.partner_name}, {email_safe(alert.partner.email)} ({alerts})"


def contact_sentence(support_contact: str) -> str:
    """How a partner email tells the reader where to get help (PartnerSupportContact)."""
    contact = email_safe(support_contact)
    if not contact:
        return "contact the team that gave you your API key"
    return f"see {contact}" if "://" in contact else f"write to {contact}"


def _exhaustion(projection: Projection) -> str:
    rate = "at this period's average rate so far"
    match projection.outlook:
        case Outlook.EXHAUSTED:
            return "now: the quota is used up until the reset"
        case Outlook.AT:
            assert projection.at is not None
            return f"around {_time(projection.at)} {rate}"
        case Outlook.SOON:
            return f"very soon: within the hour {rate}"
        case Outlook.TOO_EARLY:
            return "too early to tell: the usage so far spans less than an hour or fewer than 10 requests"
        case _:
            return f"not before the reset {rate}"


def _period(period: QuotaPeriod) -> str:
    return {"DAY": "daily (UTC days)", "WEEK": "weekly (from Monday, UTC)", "MONTH": "monthly (UTC)"}[period]


def _from_now(as_of: datetime, moment: datetime) -> str:
    minutes = max(int((moment - as_of).total_seconds() // 60), 0)
    if minutes >= 2 * 24 * 60:
        return f"in {minutes // (24 * 60)} days"
    if minutes >= 2 * 60:
        return f"in {minutes // 60} hours"
    return f"in {minutes} minutes"


def _created_at(partner: Partner | None) -> datetime | None:
    if partner is None:
        return None
    try:
        created = datetime.fromisoformat(partner.created_at)
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def ascii_text(text: str) -> str:
    """Fold to printable ASCII on one line: accents dropped (Crème -> Creme), anything else removed."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(_NOT_PRINTABLE.sub(" ", folded).split())


def _subject(prefix: str, name: str = "", suffix: str = "", fallback: str = "") -> str:
    """`prefix name suffix` in printable ASCII under 100 characters, the name cut to fit (or `fallback` when
    nothing of it is ASCII)."""
    prefix, suffix = ascii_text(prefix), ascii_text(suffix)
    name = ascii_text(email_safe(name)) or ascii_text(fallback)
    room = MAX_SUBJECT_LENGTH - len(prefix) - len(suffix) - 2
    if len(name) > room:
        name = name[: max(room - 3, 0)].rstrip() + "..."
    return " ".join(part for part in (prefix, name, suffix) if part)[:MAX_SUBJECT_LENGTH]
