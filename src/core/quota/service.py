"""The quota monitor: one pass over every tier's usage (GetUsage, a page of up to 500 keys at a time, paced),
each key's standing and reading, per-tier metrics, and alerts that go out once per key, threshold and period.

A run in order:
1. tiers are the stack's usage plans (by name); each plan with a quota is read for its current period. A plan
   that fails (throttled after botocore's retries, gone, denied) is reported and the others carry on;
2. the AI API's token counters and the previous readings come from the metering table in batches;
3. a key alerts when it reaches a threshold above the highest it was alerted for this period: only the
   highest threshold it reached, so 40% -> 100% is one alert. Each alert is claimed with a conditional write
   first, so a duplicated or overlapping run cannot send it again;
4. operators get one message per alert, paced, or digests when many keys cross in one run; partners that
   opted in get their own email through SES;
5. readings that changed are written, per-key numbers are logged, per-tier metrics published;
6. with DormantKeyDays, once a UTC day, the keys of self-service tiers unused that long are deleted after a
   notice to their partner (core.quota.dormant);
7. the account's API keys are counted (GetApiKeys, never their values) against API Gateway's 10,000.
The run fails at the end (QuotaMonitorRunFailed, raised by the handler) if a plan could not be read or an
alert could not be delivered, so Lambda's retry policy and the DLQ see it.
"""

import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.adapters.apigateway import ApiGateway
from core.adapters.partners_table import PartnerRecords
from core.adapters.ses import SesEmail
from core.adapters.sns import AlertTopic
from core.errors import DomainError, EmailRejected
from core.models import Tier
from core.observability import logger
from core.pacing import TokenBucket
from core.periods import QuotaPeriod, period_bounds, period_key
from core.ports import EmailSender
from core.quota.adapters.dormant_partners import DormantPartners as DormantPartnersTable
from core.quota.adapters.quota_table import QuotaTable
from core.quota.adapters.tier_metrics import TierMetricsEmf
from core.quota.alerts import QuotaAlert, digest_messages, operator_message, partner_email
from core.quota.dormant import DormantKeySweep, SweepReport
from core.quota.ports import (
    AlertPublisher,
    DormantPartners,
    PartnerDirectory,
    QuotaRecords,
    TierMetricsSink,
    UsageReader,
)
from core.quota.settings import QuotaMonitorSettings
from core.quota.standing import (
    AlertClaim,
    AlertState,
    KeyQuotaReading,
    PeriodRecords,
    PlanUsage,
    QuotaStanding,
    plan_usage,
    standing,
    summarise,
)
from core.settings import load_settings
from core.tiers import TierCatalog

# A reading outlives its period by this much (like the AI API's ledger), an alert record by a day.
READING_RETENTION = timedelta(days=35)
ALERT_RETENTION = timedelta(days=1)

# Alert claims (conditional writes) in flight at once.
CLAIM_CONCURRENCY = 8

# What a failed plan read can raise once botocore has given up.
_PLAN_FAILURES = (DomainError, ClientError, BotoCoreError)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """What one run did; `failed` makes the handler raise after everything else was done."""

    as_of: datetime
    tiers: list[str] = field(default_factory=list)
    failed_plans: dict[str, str] = field(default_factory=dict)
    keys: int = 0
    readings_written: int = 0
    alerts: int = 0
    operator_messages: int = 0
    digests: int = 0
    partner_emails_sent: int = 0
    partner_emails_failed: int = 0
    undelivered: int = 0
    deferred: int = 0
    api_keys: int | None = None  # every API key of the account in the Region; None: could not be counted
    dormant: SweepReport = field(default_factory=SweepReport)

    @property
    def failed(self) -> bool:
        return bool(self.failed_plans) or self.undelivered > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "tiers": self.tiers,
            "failed_plans": self.failed_plans,
            "keys": self.keys,
            "readings_written": self.readings_written,
            "alerts": self.alerts,
            "operator_messages": self.operator_messages,
            "digests": self.digests,
            "partner_emails_sent": self.partner_emails_sent,
            "partner_emails_failed": self.partner_emails_failed,
            "undelivered": self.undelivered,
            "deferred": self.deferred,
            "api_keys": self.api_keys,
            "dormant_keys_deleted": self.dormant.keys_deleted,
            "dormant_notices_failed": self.dormant.notices_failed,
            "dormant_notices_unknown": self.dormant.notices_unknown,
            "dormant_sweep_errors": len(self.dormant.errors),
            "failed": self.failed,
        }


@dataclass(frozen=True)
class _PlanRead:
    tier: Tier
    bounds: tuple[datetime, datetime]
    usage: PlanUsage

    @property
    def idle(self) -> bool:
        """Nothing used this period, and the plan's full quota left (no extension, nothing taken away)."""
        return self.usage.used == 0 and self.usage.remaining == (self.tier.limits.quota_limit or 0)

    @property
    def record_key(self) -> tuple[str, datetime]:
        """How the metering table's port names this key's items for the period."""
        return self.usage.api_key_id, self.bounds[0]


@dataclass
class _KeyRun:
    """One key carried through a run: its plan read, its items in the metering table, its standing, and then
    the highest threshold known to be alerted this period (the previous reading's, raised by this run's
    delivered alert)."""

    read: _PlanRead
    records: PeriodRecords
    standing: QuotaStanding
    alerted: int | None = None

    def __post_init__(self) -> None:
        previous = self.records.reading
        self.alerted = previous.alerted_threshold if previous else None

    def mark_alerted(self, threshold: int) -> None:
        self.alerted = max(self.alerted or 0, threshold)


@dataclass(frozen=True)
class _ClaimedAlert:
    """A key's alert this run holds the claim of, and the claim's delivery state."""

    key: _KeyRun
    alert: QuotaAlert
    state: AlertState


class QuotaMonitor:
    def __init__(
        self,
        settings: QuotaMonitorSettings,
        *,
        plans: UsageReader,
        records: QuotaRecords,
        partners: PartnerDirectory,
        topic: AlertPublisher,
        email: EmailSender | None,
        tier_metrics: TierMetricsSink,
        clock: Callable[[], datetime] = _utc_now,
        wall: Callable[[], float] = time.time,
        operator_pacer: TokenBucket | None = None,
        email_pacer: TokenBucket | None = None,
        dormant: DormantPartners | None = None,
    ) -> None:
        self._settings = settings
        self._plans = plans
        self._records = records
        self._partners = partners
        self._topic = topic
        self._email = email
        self._tier_metrics = tier_metrics
        self._clock = clock
        self._wall = wall
        self._operator_pacer = operator_pacer or TokenBucket(settings.operator_messages_per_second, 1)
        self._email_pacer = email_pacer or TokenBucket(settings.partner_emails_per_second, 1)
        # Tiers change only with a deploy, but runs are minutes apart: read them every run.
        self._tiers = TierCatalog(settings.stack_name, plans, ttl_seconds=0)
        self._dormant_sweep = (
            DormantKeySweep(
                days=settings.dormant_key_days,
                tiers=self._swept_tiers,
                plans=plans,
                records=records,
                partners=partners,
                dormant=dormant,
                email=email,
                page_size=settings.get_usage_page_size,
                lease_seconds=settings.alert_claim_seconds,
                support_contact=settings.partner_support_contact,
                wall=wall,
            )
            # Off without a sender: a key is never deleted without its notice (a template rule says so too).
            if settings.dormant_key_days and dormant is not None and email is not None
            else None
        )

    def _swept_tiers(self) -> list[Tier]:
        tiers = self._tiers.all()
        return [tiers[name] for name in self._settings.self_service_tiers if name in tiers]

    def run(self, as_of: datetime | None = None, time_left: Callable[[], float] = lambda: math.inf) -> RunReport:
        """One pass as of `as_of` (the schedule's time; default now). `time_left`: seconds the invocation has."""
        as_of = (as_of or self._clock()).astimezone(UTC)
        report = RunReport(as_of=as_of)
        keys = self._standings(self._read_plans(as_of, report), as_of)
        report.keys = len(keys)
        self._alert(keys, report, time_left)
        self._write_readings(keys, report)
        self._log_standings([key.standing for key in keys if not key.read.idle])
        if self._dormant_sweep is not None:
            report.dormant = self._dormant_sweep.run(as_of, time_left, self._settings.reserve_seconds)
        report.api_keys = self._count_api_keys()
        standings = [key.standing for key in keys]
        self._tier_metrics.publish(
            summarise(report.tiers, standings, self._settings.alert_thresholds), self._settings.alert_thresholds
        )
        log = logger.error if report.failed else logger.info
        log("quota monitor run finished", **report.as_dict())
        return report

    # --- 1. Usage ------------------------------------------------------------------------------------------

    def _read_plans(self, as_of: datetime, report: RunReport) -> list[_PlanRead]:
        reads: list[_PlanRead] = []
        for tier in sorted(self._tiers.all().values(), key=lambda tier: tier.name):
            if tier.limits.quota_limit is None or tier.limits.quota_period is None:
                logger.info("tier has no quota; not monitored", tier=tier.name)
                continue
            bounds = period_bounds(tier.limits.quota_period, as_of)
            try:
                usage = list(self._plan_usage(tier, bounds, as_of))
            except _PLAN_FAILURES as exc:
                reason = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
                report.failed_plans[tier.name] = reason
                logger.warning("could not read a plan's usage", tier=tier.name, plan_id=tier.plan_id, reason=reason)
                continue
            report.tiers.append(tier.name)
            reads += [_PlanRead(tier, bounds, item) for item in usage]
        return reads

    def _plan_usage(self, tier: Tier, bounds: tuple[datetime, datetime], as_of: datetime) -> Iterator[PlanUsage]:
        pages = self._plans.usage_pages(
            tier.plan_id, bounds[0].date(), as_of.date(), self._settings.get_usage_page_size
        )
        for page in pages:
            for key_id, daily in page.items():
                yield plan_usage(key_id, daily)

    # --- 2. Standings ----------------------------------------------------------------------------------------

    def _standings(self, reads: list[_PlanRead], as_of: datetime) -> list[_KeyRun]:
        # A key nothing passed this period has no token counters (no request reached the AI API) and needs no
        # reading: only the others are looked up, which is most of the cost of a run with many idle keys.
        found = self._records.read_period(read.record_key for read in reads if not read.idle)
        budgets = self._settings.token_budgets
        keys = []
        for read in reads:
            records = PeriodRecords() if read.idle else found[read.record_key]
            item = standing(
                read.usage,
                tier=read.tier.name,
                period=_period(read.tier),
                bounds=read.bounds,
                as_of=as_of,
                plan_limit=read.tier.limits.quota_limit or 0,
                tokens=records.tokens,
                token_budget=budgets.get(read.tier.name),
            )
            keys.append(_KeyRun(read, records, item))
        return keys

    # --- 3, 4. Alerts -------------------------------------------------------------------------------------

    def _alert(self, keys: Sequence[_KeyRun], report: RunReport, time_left: Callable[[], float]) -> None:
        """Claim and deliver the new crossings, raising each key's `alerted` once its alert is delivered."""
        crossing = []
        for key in keys:
            threshold = key.standing.highest_threshold(self._settings.alert_thresholds)
            if threshold is not None and (key.alerted or 0) < threshold:
                crossing.append((key, threshold))
        if not crossing:
            return
        partners = self._partners.partners_by_api_key_ids([key.standing.api_key_id for key, _ in crossing])
        alerts = [
            (key, QuotaAlert(key.standing, threshold, partners.get(key.standing.api_key_id)))
            for key, threshold in crossing
        ]
        claimed: list[_ClaimedAlert] = []
        # One conditional write per alert; when many keys cross at once, a few at a time (boto3 clients are
        # thread-safe), which keeps a mass crossing within seconds.
        with ThreadPoolExecutor(CLAIM_CONCURRENCY) as pool:
            results = pool.map(
                lambda pair: self._records.claim_alert(
                    self._claim(pair[1]), now=self._wall(), lease_seconds=self._settings.alert_claim_seconds
                ),
                alerts,
            )
            for (key, alert), result in zip(alerts, results, strict=True):
                if result.state is not None:
                    claimed.append(_ClaimedAlert(key, alert, result.state))
                elif result.already_sent:
                    key.mark_alerted(alert.threshold)
        for item in claimed:
            if item.state.partner_email is None and not self._wants_email(item.alert):
                item.state.partner_email = "not_requested"
        delivered = self._notify_operators(claimed, report)
        # Recorded before the partner emails, so a run that dies while sending them does not tell operators again.
        self._records.record_alerts([item.state for item in delivered], self._clock())
        emailed = self._email_partners(delivered, report, time_left)
        self._records.record_alerts(emailed, self._clock())
        for item in delivered:
            if item.state.done:
                item.key.mark_alerted(item.alert.threshold)

    def _claim(self, alert: QuotaAlert) -> AlertClaim:
        item = alert.standing
        return AlertClaim(
            api_key_id=item.api_key_id,
            period_start=item.period_start,
            threshold=alert.threshold,
            tier=item.tier,
            partner_id=alert.partner_id,
            utilisation=item.utilisation,
            expires_at=int((item.resets_at + ALERT_RETENTION).timestamp()),
        )

    def _notify_operators(self, claimed: list[_ClaimedAlert], report: RunReport) -> list[_ClaimedAlert]:
        """Publish what operators were not told yet; the claims that are now delivered (released otherwise)."""
        pending = [item for item in claimed if not item.state.operator_sent]
        delivered = [item for item in claimed if item.state.operator_sent]
        as_digest = len(pending) > self._settings.alert_digest_after
        claim_of = {id(item.alert): item for item in pending}  # a digest names its alerts
        if as_digest:
            batches = digest_messages([item.alert for item in pending], self._settings.alert_digest_size)
        else:
            batches = [(operator_message(item.alert), [item.alert]) for item in pending]
        for message, alerts in batches:
            items = [claim_of[id(alert)] for alert in alerts]
            self._operator_pacer.take()
            try:
                self._topic.publish_message(message)
            except (ClientError, BotoCoreError) as exc:
                logger.error(
                    "could not publish quota alerts; released for the next run", alerts=len(items), error=str(exc)
                )
                report.undelivered += len(items)
                for item in items:
                    self._records.release_alert(item.state)
                continue
            report.operator_messages += 1
            report.digests += 1 if as_digest else 0
            report.alerts += len(items)
            for item in items:
                item.state.operator_sent = True
                delivered.append(item)
                logger.info(
                    "quota alert sent",
                    api_key_id=item.alert.standing.api_key_id,
                    partner_id=item.alert.partner_id,
                    tier=item.alert.standing.tier,
                    threshold=item.alert.threshold,
                    digest=as_digest,
                )
        return delivered

    def _wants_email(self, alert: QuotaAlert) -> bool:
        return self._email is not None and alert.partner is not None and alert.partner.wants_alert_emails

    def _email_partners(
        self, delivered: list[_ClaimedAlert], report: RunReport, time_left: Callable[[], float]
    ) -> list[AlertState]:
        """Send the partners' own emails that are due; the states that changed."""
        changed = []
        for item in delivered:
            alert, state, partner = item.alert, item.state, item.alert.partner
            if state.partner_email is not None or self._email is None or partner is None:
                continue
            if time_left() < self._settings.reserve_seconds:
                # The claim stays held until its lease ends; the next run after that sends this email.
                report.deferred += 1
                continue
            self._email_pacer.take()
            try:
                self._email.send(partner.email, partner_email(alert, self._settings.partner_support_contact))
            except EmailRejected as exc:
                logger.warning("partner alert email refused", partner_id=partner.partner_id, error=exc.message)
                state.partner_email = "failed"
                report.partner_emails_failed += 1
            except (ClientError, BotoCoreError) as exc:
                logger.error("could not send a partner alert email", partner_id=partner.partner_id, error=str(exc))
                report.undelivered += 1
                continue
            else:
                state.partner_email = "sent"
                report.partner_emails_sent += 1
            changed.append(state)
        return changed

    # --- 6. The account's API keys -----------------------------------------------------------------------------

    def _count_api_keys(self) -> int | None:
        """The account's keys against API Gateway's 10,000 per Region (ApiKeysInAccount). A count that fails is
        logged and skipped: the alarm then sees no data for a run, and the run's alerts are not held back."""
        try:
            return self._plans.count_api_keys()
        except _PLAN_FAILURES as exc:
            reason = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            logger.warning("could not count the account's API keys", reason=reason)
            return None

    # --- 5. Readings, logs ----------------------------------------------------------------------------------

    def _write_readings(self, keys: Sequence[_KeyRun], report: RunReport) -> None:
        changed = []
        for key in keys:
            item, previous = key.standing, key.records.reading
            reading = KeyQuotaReading(
                api_key_id=item.api_key_id,
                period_start=item.period_start,
                tier=item.tier,
                used=item.consumed,
                remaining=item.remaining,
                limit=item.limit,
                as_of=item.as_of.isoformat(),
                requests=item.used,
                tokens_used=item.tokens_used,
                alerted_threshold=key.alerted,
                expires_at=int((item.resets_at + READING_RETENTION).timestamp()),
            )
            if reading.same_values(previous) or (previous is None and _untouched(reading, key.read.tier)):
                continue
            changed.append(reading)
        self._records.write_readings(changed)
        report.readings_written = len(changed)

    def _log_standings(self, standings: Sequence[QuotaStanding]) -> None:
        # One record per key that used anything this period (an idle key's would only say 0%): CloudWatch Logs
        # Insights can query them (`filter message = "key quota"`), with the key id as a field, which costs
        # nothing per key the way a metric dimension would.
        for item in standings:
            projection = item.projection()
            logger.info(
                "key quota",
                api_key_id=item.api_key_id,
                partner_id=item.partner_id,
                tier=item.tier,
                period_start=period_key(item.period_start),
                resets_at=period_key(item.resets_at),
                requests=item.used,
                used=item.consumed,
                remaining=item.remaining,
                limit=item.limit,
                utilisation_pct=round(item.request_utilisation, 2),
                tokens_used=item.tokens_used,
                token_budget=item.token_budget,
                token_utilisation_pct=None if item.token_utilisation is None else round(item.token_utilisation, 2),
                # A time only where the data supports one (core.quota.standing.project); `exhaustion` says why not.
                projected_exhaustion=projection.at.isoformat() if projection.at else None,
                exhaustion=projection.outlook.value,
            )


def _period(tier: Tier) -> QuotaPeriod:
    assert tier.limits.quota_period is not None
    return tier.limits.quota_period


def _untouched(reading: KeyQuotaReading, tier: Tier) -> bool:
    """Nothing consumed, the plan's own limit, no tokens, no alert: what no reading at all already says."""
    return (
        reading.used == 0
        and reading.limit == (tier.limits.quota_limit or 0)
        and not reading.tokens_used
        and reading.alerted_threshold is None
    )


@cache
def quota_monitor() -> QuotaMonitor:
    settings = load_settings(QuotaMonitorSettings)
    return QuotaMonitor(
        settings,
        plans=ApiGateway(pacer=TokenBucket(settings.management_api_rate, settings.management_api_burst)),
        records=QuotaTable(settings.metering_table),
        partners=PartnerRecords(settings.partners_table),
        topic=AlertTopic(settings.alert_topic_arn),
        email=SesEmail(settings.partner_alert_sender) if settings.partner_alert_sender else None,
        tier_metrics=TierMetricsEmf(settings.stack_name),
        dormant=DormantPartnersTable(settings.partners_table) if settings.dormant_key_days else None,
    )
