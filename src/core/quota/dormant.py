"""The dormant-key sweep (DormantKeyDays, 0 = off): the keys of self-service tiers unused for that many days are
deleted after their partner is told, keeping the partner record (`DORMANT`) so an operator can issue a new key.
It frees room under API Gateway's 10,000 keys per account and Region (README, "Capacity").

Run by the quota monitor, at most once a UTC day (a claim in the metering table). "Unused" is API Gateway's own
record: GetUsage of the tier's plan shows no request on any of the last DormantKeyDays UTC days, and the
partner signed up before them. Per key, in this order, each step recorded before the next:
1. claim the notice on the partner record (only an ACTIVE partner still holding this key on this tier);
2. email the notice (SES, transactional: whether or not the partner asked for alert emails);
3. mark the partner DORMANT (the AI API refuses its key from now on);
4. delete the key.
A run killed after 3 is finished by the next day's sweep (the key is still in the plan, unused). A run killed
between 1 and 3 leaves a claim nobody knows the outcome of: the notice may have gone out, so it is neither sent
again nor followed by a deletion; the sweep reports it (`dormant_notices_unknown`) for an operator.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from core.email_text import email_safe
from core.errors import DomainError, EmailRejected
from core.messages import Message
from core.models import Partner, Tier
from core.observability import logger
from core.ports import EmailSender
from core.quota.alerts import contact_sentence

if TYPE_CHECKING:
    from core.quota.ports import DormantPartners, PartnerDirectory, QuotaRecords, UsageReader

# The day's claim outlives its day by this much (then DynamoDB's TTL removes it).
SWEEP_RECORD_RETENTION = timedelta(days=2)


class NoticeState(StrEnum):
    """Where a key's deletion notice stands, as the sweep found it."""

    CLAIMED = "claimed"  # this run holds the claim: send the notice
    SENT = "sent"  # sent, the partner is DORMANT: (finish) deleting the key
    FAILED = "failed"  # SES refused it for good: the key stays
    BUSY = "busy"  # another run holds the claim
    UNKNOWN = "unknown"  # a run died holding the claim: it may have been sent, so neither send nor delete
    GONE = "gone"  # the partner no longer holds this key on this tier, active: nothing to do


@dataclass
class SweepReport:
    swept: bool = False
    candidates: int = 0
    keys_deleted: int = 0
    notices_sent: int = 0
    notices_failed: int = 0
    notices_unknown: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DormantKey:
    api_key_id: str
    tier: Tier
    partner: Partner


def dormant_notice(partner: Partner, days: int, support_contact: str = "") -> Message:
    """The partner's notice that its unused key is deleted. Only the key's first characters, never the key."""
    name = email_safe(partner.name)
    key = f"Your API key starting {partner.key_prefix}..." if partner.key_prefix else "Your API key"
    lines = [
        f"Hello {name}," if name else "Hello,",
        "",
        f"{key} on the {partner.tier} plan has not been used for {days} days, so we are deleting it now: requests "
        "with it will be refused from now on.",
        "",
        f"Your account is kept. To get a new key, {contact_sentence(support_contact)}.",
        "",
        "You get this email because you hold an API key with us; it is the only one we send about this key.",
    ]
    return Message(
        subject=f"Your unused API key on the {partner.tier} plan is being deleted", body="\n".join(lines), attributes={}
    )


class DormantKeySweep:
    def __init__(
        self,
        *,
        days: int,
        tiers: Callable[[], list[Tier]],
        plans: "UsageReader",
        records: "QuotaRecords",
        partners: "PartnerDirectory",
        dormant: "DormantPartners",
        email: EmailSender,
        page_size: int,
        lease_seconds: int,
        support_contact: str = "",
        wall: Callable[[], float],
    ) -> None:
        self._days = days
        self._tiers = tiers
        self._plans = plans
        self._records = records
        self._partners = partners
        self._dormant = dormant
        self._email = email
        self._page_size = page_size
        self._lease_seconds = lease_seconds
        self._support_contact = support_contact
        self._wall = wall

    def run(self, as_of: datetime, time_left: Callable[[], float], reserve_seconds: float) -> SweepReport:
        """The day's sweep, if no other run did it; keys whose turn did not come before time ran out wait for the
        next run of the day (the claim is released only by finishing)."""
        report = SweepReport()
        day = as_of.astimezone(UTC).date()
        expires_at = int((datetime.combine(day, datetime.min.time(), UTC) + SWEEP_RECORD_RETENTION).timestamp())
        if not self._records.claim_daily_sweep(day, self._wall(), self._lease_seconds, expires_at):
            return report
        report.swept = True
        finished = True
        for key in self._dormant_keys(day, as_of, report):
            if time_left() < reserve_seconds:
                finished = False
                break
            self._retire(key, as_of, report)
        if finished and not report.errors:
            self._records.finish_daily_sweep(day, as_of)
        logger.info("dormant key sweep finished", **report.__dict__)
        return report

    def _dormant_keys(self, day: date, as_of: datetime, report: SweepReport) -> Iterator[DormantKey]:
        first_day = day - timedelta(days=self._days - 1)
        signed_up_before = as_of - timedelta(days=self._days)
        for tier in self._tiers():
            try:
                unused = [
                    key_id
                    for page in self._plans.usage_pages(tier.plan_id, first_day, day, self._page_size)
                    for key_id, days in page.items()
                    if not any(used for used, _ in days)
                ]
            except (DomainError, ClientError, BotoCoreError) as exc:
                report.errors.append(f"{tier.name}: {exc}")
                logger.warning(
                    "could not read a plan's usage for the dormant-key sweep", tier=tier.name, error=str(exc)
                )
                continue
            partners = self._partners.partners_by_api_key_ids(unused) if unused else {}
            for key_id in unused:
                partner = partners.get(key_id)
                # A key nobody owns (made by hand) is not ours to delete; a partner newer than the window is not
                # dormant, only new.
                if partner is None or datetime.fromisoformat(partner.created_at) > signed_up_before:
                    continue
                report.candidates += 1
                yield DormantKey(key_id, tier, partner)

    def _retire(self, key: DormantKey, as_of: datetime, report: SweepReport) -> None:
        partner, now = key.partner, as_of.isoformat()
        try:
            state = self._dormant.claim_notice(
                partner.partner_id, key.api_key_id, key.tier.name, int(self._wall()), self._lease_seconds
            )
            if state is NoticeState.CLAIMED:
                if not self._send_notice(key, report):
                    return
                self._dormant.mark_dormant(partner.partner_id, key.api_key_id, now)
                state = NoticeState.SENT
            if state is NoticeState.UNKNOWN:
                report.notices_unknown += 1
                logger.warning(
                    "a dormant key's notice may or may not have been sent (a run died); the key is kept",
                    partner_id=partner.partner_id,
                    api_key_id=key.api_key_id,
                )
            if state is NoticeState.SENT:
                self._plans.delete_key(key.api_key_id)
                report.keys_deleted += 1
                logger.info("deleted a dormant key", partner_id=partner.partner_id, api_key_id=key.api_key_id)
        except (DomainError, ClientError, BotoCoreError) as exc:
            report.errors.append(f"{key.api_key_id}: {exc}")
            logger.warning("could not retire a dormant key", api_key_id=key.api_key_id, error=str(exc))

    def _send_notice(self, key: DormantKey, report: SweepReport) -> bool:
        partner = key.partner
        try:
            self._email.send(partner.email, dormant_notice(partner, self._days, self._support_contact))
        except EmailRejected as exc:
            logger.warning(
                "dormant key notice refused; the key is kept", partner_id=partner.partner_id, error=exc.message
            )
            self._dormant.notice_failed(partner.partner_id, key.api_key_id, datetime.now(UTC).isoformat())
            report.notices_failed += 1
            return False
        except (ClientError, BotoCoreError) as exc:
            # Nothing went out: free the claim, so the next sweep tries again.
            self._dormant.release_notice(partner.partner_id, key.api_key_id)
            raise DomainError(f"the notice could not be sent: {exc}") from exc
        report.notices_sent += 1
        return True
