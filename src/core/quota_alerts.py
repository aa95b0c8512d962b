"""Quota alerts as people read them: the operators' message (one per crossing, or a digest when many keys
cross in one run) and the partner's own email. Text only, no AWS.

SNS email subjects must be ASCII, start with a letter, number or punctuation mark, hold no line breaks or
control characters, and be under 100 characters; partner names are user input, so they are folded to ASCII
and cut to fit.
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.models import Partner
from core.quota import QuotaStanding

MAX_SUBJECT_LENGTH = 99
# Message attributes subscribers can filter on: str -> String, int -> Number, list -> String.Array.
AttributeValue = str | int | list[str]

ALERT_KIND = "quota-alert"
DIGEST_KIND = "quota-digest"


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
        return self.partner.name if self.partner else f"key {self.standing.api_key_id}"


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    attributes: dict[str, AttributeValue]


def operator_message(alert: QuotaAlert) -> Message:
    standing = alert.standing
    subject = _subject(
        f"Quota {alert.threshold}% reached:", alert.partner_name, f"({standing.tier})", fallback=alert.partner_id
    )
    lines = [
        f"{alert.partner_name} (partner {alert.partner_id}) on the {standing.tier} tier has reached "
        f"{alert.threshold}% of its {_measure(alert)}.",
        "",
        *_standing_lines(standing),
        f"API key id:           {standing.api_key_id}",
        "",
        "What you can do:",
        "- Upgrade the partner to a higher tier through your billing system (the tier-change webhook moves "
        "the same key to the new plan and carries this period's usage over).",
        f"- Or grant an extension for this period only: aws apigateway update-usage --usage-plan-id <{standing.tier} "
        f"plan id> --key-id {standing.api_key_id} --patch-operations op=replace,path=/remaining,value=<requests>",
        "",
        f"One alert per key, threshold and quota period; the next for this key comes at a higher threshold "
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
            f"{len(alerts)} keys reached a quota threshold for the first time this period"
            f"{'; this message lists ' + str(len(chunk)) + ' of them' if len(chunks) > 1 else ''}.",
            "",
        ]
        for alert in chunk:
            standing = alert.standing
            lines.append(
                f"- {alert.threshold}% {standing.tier}: {alert.partner_name} (partner {alert.partner_id}, key "
                f"{standing.api_key_id}): {standing.consumed}/{standing.limit} requests "
                f"({standing.request_utilisation:.1f}%){_tokens_inline(standing)}; runs out: "
                f"{_exhaustion(standing)}; resets {_time(standing.resets_at)}"
            )
        lines += [
            "",
            "Upgrade a partner through your billing system, or grant an extension for this period with "
            "aws apigateway update-usage (replace /remaining).",
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


def partner_email(alert: QuotaAlert) -> Message:
    """The partner's own alert (they opted in at signup). Never holds a key value: only its first characters."""
    standing = alert.standing
    assert alert.partner is not None
    key = f"Your API key starting {alert.partner.key_prefix}..." if alert.partner.key_prefix else "Your API key"
    lines = [
        f"Hello {alert.partner.name},",
        "",
        f"{key} has used {alert.threshold}% of its {_measure(alert)} on the {standing.tier} plan for this period.",
        "",
        *_standing_lines(standing),
        "",
        "When the quota is used up, requests are refused (HTTP 429) until the reset. To keep going, upgrade your "
        "plan, or ask us for an extension for this period.",
        "",
        "You get these emails because you asked for quota alerts when you signed up.",
    ]
    return Message(
        subject=_subject(f"You have used {alert.threshold}% of your {standing.tier} quota"),
        body="\n".join(lines),
        attributes={},
    )


def _standing_lines(standing: QuotaStanding) -> list[str]:
    lines = [
        f"Requests:             {standing.consumed} / {standing.limit} "
        f"({standing.request_utilisation:.1f}%), {standing.remaining} remaining",
    ]
    if standing.token_utilisation is not None:
        lines.append(
            f"Tokens:               {standing.tokens_used} / {standing.token_budget} "
            f"({standing.token_utilisation:.1f}%)"
        )
    lines += [
        f"Quota period:         {standing.period}, {_time(standing.period_start)} to {_time(standing.resets_at)} (UTC)",
        f"Resets at:            {_time(standing.resets_at)}",
        f"Projected exhaustion: {_exhaustion(standing)}",
        f"As of:                {_time(standing.as_of)}",
    ]
    return lines


def _measure(alert: QuotaAlert) -> str:
    standing = alert.standing
    requests = standing.consumed * 100 >= alert.threshold * standing.limit if standing.limit else True
    tokens = standing.token_utilisation is not None and standing.token_utilisation >= alert.threshold
    if requests and tokens:
        return "request quota and token budget"
    return "token budget" if tokens and not requests else "request quota"


def _tokens_inline(standing: QuotaStanding) -> str:
    if standing.token_utilisation is None:
        return ""
    return f", {standing.tokens_used}/{standing.token_budget} tokens ({standing.token_utilisation:.1f}%)"


def _exhaustion(standing: QuotaStanding) -> str:
    runs_out = standing.projected_exhaustion
    if standing.remaining <= 0:
        return "now: the quota is used up until the reset"
    if runs_out is None:
        return "not before the reset at the current rate"
    return f"{_time(runs_out)} at the current rate"


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
    name = ascii_text(name) or ascii_text(fallback)
    room = MAX_SUBJECT_LENGTH - len(prefix) - len(suffix) - 2
    if len(name) > room:
        name = name[: max(room - 3, 0)].rstrip() + "..."
    return " ".join(part for part in (prefix, name, suffix) if part)[:MAX_SUBJECT_LENGTH]
