"""The operators' email for an applied tier change: who moved, from which tier to which, and what that changed
(quota, rate, tokens, models). Text only, no AWS. Partner-supplied text goes through `email_safe`."""

from dataclasses import dataclass
from datetime import datetime

from core.billing.models import BillingEvent
from core.email_text import email_safe
from core.models import PartnerStatus
from core.tier_policy import TierPolicy

KIND = "tier-change"
# No support contact is configured for operators: point at what explains the webhook.
HELP = "the README's section 'Tier changes from billing' explains the answers and the logs."


@dataclass(frozen=True)
class TierChangeNotice:
    """What an applied change did; `previous_*` is None when a retry no longer knows it."""

    event: BillingEvent
    partner_id: str
    partner_name: str
    previous_tier: str | None
    previous_status: PartnerStatus | None
    tier: str
    status: PartnerStatus
    applied_at: datetime
    remaining: int | None = None  # the new plan's remaining quota after the carry-over, when one was set


def subject(notice: TierChangeNotice) -> str:
    """ASCII and short, as SNS email subjects must be: ids and tier names only, never the partner's name."""
    if notice.status is PartnerStatus.DISABLED:
        change = "disabled"
    elif notice.previous_status is PartnerStatus.DISABLED:
        change = f"enabled again on {notice.tier}"
    else:
        change = f"{notice.previous_tier or 'unknown'} -> {notice.tier}"
    return f"Tier change: {notice.partner_id} {change}"


def body(notice: TierChangeNotice, policies: dict[str, TierPolicy]) -> str:
    """The email body: plain text, one fact a line, partner-supplied text made safe."""
    name = email_safe(notice.partner_name).strip() or notice.partner_id
    before, after = notice.previous_tier, notice.tier
    lines = [f"{name} (partner {notice.partner_id}) {_what_happened(notice)}", ""]
    old, new = policies.get(before or ""), policies.get(after)
    if new is not None and notice.status is PartnerStatus.ACTIVE:
        lines += ["What the partner's key gets now:" if old is None or before == after else "What changed:"]
        lines += _limits(old if before != after else None, new)
        lines.append("")
    if notice.remaining is not None:
        lines += [f"Usage this period was carried over: {notice.remaining} requests left in the {after} quota.", ""]
    event = notice.event
    lines += [
        f"Billing event: {event.event_type} {event.event_id} ({event.scheme}), "
        f"applied {notice.applied_at.strftime('%Y-%m-%d %H:%M UTC')}.",
        "The partner keeps the same API key; nothing is needed on their side.",
        "",
        "To change the tier again, change the partner's subscription in the billing system: its webhook moves "
        "the key. A change that looks wrong: find the event id above in the billing system and in the "
        f"webhook's log (field event_id). Help: {HELP}",
    ]
    return "\n".join(lines)


def _what_happened(notice: TierChangeNotice) -> str:
    if notice.status is PartnerStatus.DISABLED:
        return f"cancelled: its key on the {notice.tier} tier is disabled (requests get 403 until it subscribes again)."
    if notice.previous_status is PartnerStatus.DISABLED:
        return f"subscribed again: its key is enabled on the {notice.tier} tier."
    if notice.previous_tier is None:
        return f"is now on the {notice.tier} tier."
    return f"moved from the {notice.previous_tier} tier to the {notice.tier} tier."


def _limits(old: TierPolicy | None, new: TierPolicy) -> list[str]:
    rows = [
        ("Requests", _quota),
        ("Rate", lambda policy: f"{policy.rate_limit:g} requests/s (burst {policy.burst_limit})"),
        ("Tokens", _tokens),
        ("Models", _models),
    ]
    lines = []
    for label, show in rows:
        now = show(new)
        lines.append(
            f"  {label + ':':<10}{now}"
            if old is None or show(old) == now
            else f"  {label + ':':<10}{show(old)} -> {now}"
        )
    return lines


def _quota(policy: TierPolicy) -> str:
    return f"{policy.quota_limit} a {policy.quota_period.lower()}"


def _tokens(policy: TierPolicy) -> str:
    return "unlimited" if policy.unlimited_tokens else f"{policy.token_budget} a {policy.quota_period.lower()}"


def _models(policy: TierPolicy) -> str:
    return "every model served" if "*" in policy.models else ", ".join(policy.models)
