"""In-memory fakes of the ports, one each, for unit tests and benches. Each subclasses the Protocol it stands
for, so mypy checks it keeps the port's signatures, and keeps the contract of what it replaces: GetUsage's
daily [used, remaining] pages, a claim granted once per alert (DynamoDB's conditional write)."""

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from pydantic import SecretStr

from core.admin.models import PartnerFilter
from core.admin.ports import ApiKeys, LedgerItem, LedgerTotals, Notifier, PartnerIndex, UsageLedger
from core.ai.chat import ModelReply, ModelRequest, StreamEnd, StreamEvent, TextDelta
from core.ai.ledger import LedgerEntry, LedgerReading, QuotaReading, TokenHold
from core.ai.ports import ModelProvider, PartnerLookup, TokenLedger
from core.errors import TierChangeInProgress
from core.key_rotation import CarriedLedger, KeyIssuer, KeyRotation, LedgerCarry, RetiredKeys, Retirement
from core.messages import Message
from core.models import (
    AuditEntry,
    DailyUsage,
    IssuedKey,
    Partner,
    PartnerStatus,
    PendingTierChange,
    Tier,
    TierChangeState,
    TierLimits,
    UsagePlan,
)
from core.ports import AuditLog, EmailSender, TierChangeLock, UsagePlanGateway
from core.quota.ports import AlertPublisher, PartnerDirectory, QuotaRecords, TierMetricsSink, UsageReader
from core.quota.standing import AlertClaim, AlertState, ClaimResult, KeyQuotaReading, PeriodRecords, TierSummary
from core.tiers import TierCatalog


def active_partner(api_key_id: str, **fields: object) -> Partner:
    """An active partner owning `api_key_id`, who asked for and confirmed alert emails."""
    values: dict[str, object] = {
        "partner_id": f"p_{api_key_id}",
        "name": f"Partner {api_key_id}",
        "email": f"{api_key_id}@partner.example",
        "tier": "free",
        "api_key_id": api_key_id,
        "key_prefix": "AbCd",
        "status": PartnerStatus.ACTIVE,
        "created_at": "2026-03-01T00:00:00+00:00",
        "updated_at": "2026-03-01T00:00:00+00:00",
        "alert_emails": True,
        "email_confirmed": True,
        **fields,
    }
    return Partner.model_validate(values)


# --- The quota monitor ----------------------------------------------------------------------------------------


class FakePlans(UsageReader):
    """GetUsagePlans and GetUsage: every key's days of the period, the last one today."""

    def __init__(self, plans: list[UsagePlan], usage: dict[str, dict[str, int]]) -> None:
        self.plans = plans
        self.usage = usage  # plan id -> key id -> requests today
        self.pages_read: list[str] = []
        self.api_keys: int | Exception = sum(len(keys) for keys in usage.values())  # GetApiKeys's count, or its failure

    def count_api_keys(self) -> int:
        if isinstance(self.api_keys, Exception):
            raise self.api_keys
        return self.api_keys

    def delete_key(self, key_id: str) -> None:
        for keys in self.usage.values():
            keys.pop(key_id, None)

    def list_usage_plans(self) -> list[UsagePlan]:
        return self.plans

    def usage_pages(self, plan_id: str, start: date, end: date, page_size: int) -> Iterator[dict[str, list[list[int]]]]:
        limit = next(plan.limits.quota_limit for plan in self.plans if plan.id == plan_id) or 0
        keys = sorted(self.usage.get(plan_id, {}).items())
        for first in range(0, max(len(keys), 1), page_size):
            self.pages_read.append(plan_id)
            days = (end - start).days
            yield {key: [[0, limit]] * days + [[used, limit - used]] for key, used in keys[first : first + page_size]}


class FakeRecords(QuotaRecords):
    """The metering table: a claim is granted once per alert, as the conditional write does."""

    def __init__(self) -> None:
        self.claimed: set[tuple[str, int]] = set()
        self.recorded: dict[tuple[str, int], AlertState] = {}
        self.readings: list[KeyQuotaReading] = []

    def read_period(self, keys: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], PeriodRecords]:
        return {key: PeriodRecords() for key in keys}

    def claim_daily_sweep(self, day: date, now: float, lease_seconds: int, expires_at: int) -> bool:
        return True

    def finish_daily_sweep(self, day: date, now: datetime) -> None:
        return None

    def write_readings(self, readings: list[KeyQuotaReading]) -> None:
        self.readings += readings

    def claim_alert(self, claim: AlertClaim, now: float, lease_seconds: int) -> ClaimResult:
        if (claim.api_key_id, claim.threshold) in self.claimed:
            return ClaimResult(state=None, already_sent=True)
        self.claimed.add((claim.api_key_id, claim.threshold))
        return ClaimResult(state=AlertState(claim=claim, claimed_until=int(now) + lease_seconds))

    def record_alerts(self, states: list[AlertState], now: datetime) -> None:
        for state in states:
            self.recorded[(state.claim.api_key_id, state.claim.threshold)] = state

    def release_alert(self, state: AlertState) -> None:
        self.claimed.discard((state.claim.api_key_id, state.claim.threshold))


class FakePartners(PartnerDirectory):
    """Every key has an active partner who confirmed alert emails."""

    def partners_by_api_key_ids(self, api_key_ids: list[str]) -> dict[str, Partner]:
        return {key: active_partner(key) for key in api_key_ids}


class Outbox(AlertPublisher, EmailSender):
    """The operators' topic and the partners' email, kept."""

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.emailed: list[tuple[str, Message]] = []

    def publish_message(self, message: Message) -> str:
        self.published.append(message)
        return "m"

    def send(self, to: str, message: Message) -> str:
        self.emailed.append((to, message))
        return "e"


class NoMetrics(TierMetricsSink):
    """Per-tier metrics, kept instead of logged."""

    def __init__(self) -> None:
        self.summaries: list[TierSummary] = []

    def publish(self, summaries: list[TierSummary], thresholds: tuple[int, ...]) -> None:
        self.summaries = summaries


# --- The AI API -----------------------------------------------------------------------------------------------


class InstantModel(ModelProvider):
    """A model that costs nothing and answers at once."""

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return 8

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        return ModelReply("Hello from the bench.", "stop", prompt_tokens=8, completion_tokens=5)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        yield from (TextDelta("Hello"), TextDelta(" from the bench."), StreamEnd("stop", 8, 5))

    def estimate_completion_tokens(self, text: str) -> int:
        return len(text.split())


class MemoryPartners(PartnerLookup):
    """One partner, found by id or by its key."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner

    def get_by_api_key_id(self, api_key_id: str) -> Partner | None:
        return self.partner if api_key_id == self.partner.api_key_id else None

    def get(self, partner_id: str) -> Partner | None:
        return self.partner if partner_id == self.partner.partner_id else None


class MemoryLedger(TokenLedger):
    """Counts requests and settled tokens; every hold fits, and there is no quota reading."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def count_request(self, entry: LedgerEntry) -> LedgerReading:
        self.counters["requests"] = self.counters.get("requests", 0) + 1
        return LedgerReading(requests=self.counters["requests"])

    def reserve(
        self, entry: LedgerEntry, hold: TokenHold, budget: int | None, now: float
    ) -> tuple[bool, LedgerReading]:
        return True, self.count_request(entry)

    def settle(self, entry: LedgerEntry, hold: TokenHold, prompt_tokens: int, completion_tokens: int) -> None:
        self.counters["tokens"] = self.counters.get("tokens", 0) + prompt_tokens + completion_tokens

    def release(self, entry: LedgerEntry, hold: TokenHold) -> None:
        return None

    def quota_reading(self, entry: LedgerEntry) -> QuotaReading | None:
        return None


class ScriptedModel(ModelProvider):
    """A provider that streams what a test scripts: events, a pause before each, or an error after them.
    It counts like the offline provider (a word is a token) and reports no usage unless the script does."""

    def __init__(self, events: list[StreamEvent | Exception], pause_seconds: float = 0.0) -> None:
        self.events = events
        self.pause = pause_seconds
        self.closed = False

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return sum(len(text.split()) for text in request.texts())

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        raise NotImplementedError

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        try:
            for item in self.events:
                time.sleep(self.pause)
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed = True

    def estimate_completion_tokens(self, text: str) -> int:
        return len(text.split())


# --- The operator console --------------------------------------------------------------------------------------


class MemoryPartnerIndex(PartnerIndex):
    """Partner records by id, paged in id order (the table's Scan order is its own; any fixed order will do)."""

    def __init__(self, partners: Iterable[Partner] = ()) -> None:
        self.partners = {partner.partner_id: partner for partner in partners}

    def get(self, partner_id: str) -> Partner | None:
        return self.partners.get(partner_id)

    def page(self, filters: PartnerFilter, limit: int, after: str | None) -> tuple[list[Partner], str | None]:
        matching = [
            partner
            for partner_id, partner in sorted(self.partners.items())
            if (after is None or partner_id > after)
            and filters.tier in (None, partner.tier)
            and filters.status in (None, partner.status)
            and filters.email in (None, partner.email)
        ]
        page = matching[:limit]
        return page, page[-1].partner_id if len(matching) > limit else None

    def set_status(
        self,
        partner_id: str,
        *,
        seen: PartnerStatus,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        now: float,
    ) -> None:
        partner = self.partners[partner_id]
        if partner.status is not seen:
            raise TierChangeInProgress(retry_after_seconds=5)
        self.partners[partner_id] = partner.model_copy(
            update={"status": status, "held_status": held_status, "updated_at": updated_at}
        )


class MemoryApiKeys(ApiKeys):
    """API Gateway's keys: enabled or not, deleted or not; `fail` names an operation that raises once."""

    def __init__(self, fail: str | None = None) -> None:
        self.enabled: dict[str, bool] = {}
        self.deleted: set[str] = set()
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def _call(self, operation: str, key_id: str) -> None:
        self.calls.append((operation, key_id))
        if self.fail == operation:
            self.fail = None
            raise RuntimeError(f"{operation} failed")

    def enable_key(self, key_id: str) -> None:
        self._call("enable_key", key_id)
        self.enabled[key_id] = True

    def disable_key(self, key_id: str) -> None:
        self._call("disable_key", key_id)
        self.enabled[key_id] = False

    def delete_key(self, key_id: str) -> None:
        self._call("delete_key", key_id)
        self.deleted.add(key_id)


class MemoryAuditLog(AuditLog):
    """The audit trail, numbered per partner as the table's transaction numbers it."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], AuditEntry] = {}

    def begin(self, entry: AuditEntry) -> AuditEntry:
        seq = 1 + sum(1 for partner_id, _ in self.entries if partner_id == entry.partner_id)
        numbered = entry.model_copy(update={"seq": seq})
        self.entries[(entry.partner_id, seq)] = numbered
        return numbered

    def finish(self, partner_id: str, seq: int, outcome: str, details: dict[str, Any], notified: bool) -> None:
        entry = self.entries[(partner_id, seq)]
        self.entries[(partner_id, seq)] = entry.model_copy(
            update={"outcome": outcome, "details": details, "notified": notified}
        )

    def trail(self, partner_id: str, limit: int) -> list[AuditEntry]:
        own = [entry for (owner, _), entry in self.entries.items() if owner == partner_id]
        return sorted(own, key=lambda entry: entry.seq, reverse=True)[:limit]


class OperatorTopic(Notifier):
    """The operators' topic, kept: (subject, message, attributes)."""

    def __init__(self, fails: bool = False) -> None:
        self.published: list[tuple[str, dict[str, Any] | str, dict[str, str]]] = []
        self.fails = fails

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str:
        if self.fails:
            raise RuntimeError("SNS is down")
        self.published.append((subject, message, dict(attributes or {})))
        return "m"


# --- Usage plans and tier changes (kernel ports) ------------------------------------------------------------------


class MemoryPlans(UsagePlanGateway):
    """API Gateway's plans, keys and usage for one day (today): which plans hold a key (one per stage), each key's
    requests today per plan, and the remaining quota UpdateUsage set (else the plan's quota minus the requests).
    GetUsage answers one [used, remaining] entry per day from start to end, the last one today's."""

    def __init__(self, plans: list[UsagePlan]) -> None:
        self.plans = {plan.id: plan for plan in plans}
        self.members: dict[str, set[str]] = {}  # key id -> plan ids
        self.enabled: dict[str, bool] = {}
        self.used: dict[tuple[str, str], int] = {}  # (plan id, key id) -> requests today
        self.remaining_set: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, ...]] = []

    def list_usage_plans(self) -> list[UsagePlan]:
        return list(self.plans.values())

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey:
        raise NotImplementedError

    def read_key_value(self, key_id: str) -> str:
        raise NotImplementedError

    def delete_key(self, key_id: str) -> None:
        self.members.pop(key_id, None)

    def attach_key(self, plan_id: str, key_id: str) -> None:
        self.calls.append(("attach", plan_id, key_id))
        self.members.setdefault(key_id, set()).add(plan_id)

    def detach_key(self, plan_id: str, key_id: str) -> None:
        self.calls.append(("detach", plan_id, key_id))
        self.members.get(key_id, set()).discard(plan_id)

    def enable_key(self, key_id: str) -> None:
        self.enabled[key_id] = True

    def disable_key(self, key_id: str) -> None:
        self.enabled[key_id] = False

    def plans_of_key(self, key_id: str) -> list[str]:
        return sorted(self.members.get(key_id, set()))

    def remaining(self, plan_id: str, key_id: str) -> int:
        quota = self.plans[plan_id].limits.quota_limit or 0
        return self.remaining_set.get((plan_id, key_id), quota - self.used.get((plan_id, key_id), 0))

    def key_usage(self, plan_id: str, key_id: str, start: date, end: date) -> list[DailyUsage]:
        self.calls.append(("get_usage", plan_id, key_id))
        if plan_id not in self.members.get(key_id, set()):
            return []
        days = (end - start).days
        quota = self.plans[plan_id].limits.quota_limit or 0
        today = DailyUsage(self.used.get((plan_id, key_id), 0), self.remaining(plan_id, key_id))
        return [DailyUsage(0, quota)] * days + [today]

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None:
        self.calls.append(("update_usage", plan_id, key_id, str(remaining)))
        self.remaining_set[(plan_id, key_id)] = remaining


class MemoryTierState(TierChangeLock):
    """Partner records with their tier-change state; the lock as the table's conditional writes take it."""

    def __init__(self, index: "MemoryPartnerIndex") -> None:
        self.index = index  # shares the partner records with the console's PartnerIndex
        self.states: dict[str, TierChangeState] = {}

    def get_with_state(self, partner_id: str) -> tuple[Partner, TierChangeState] | None:
        partner = self.index.get(partner_id)
        return (partner, self.states.get(partner_id, TierChangeState())) if partner else None

    def begin_tier_change(
        self, partner_id: str, change: PendingTierChange, seen: TierChangeState, seen_status: PartnerStatus, now: float
    ) -> None:
        current = self.states.get(partner_id, TierChangeState())
        held = current.tier_change is not None and current.tier_change.lease_until >= now
        if current != seen or held or self.index.partners[partner_id].status is not seen_status:
            raise TierChangeInProgress(retry_after_seconds=5)
        self.states[partner_id] = current.model_copy(update={"tier_change": change})

    def release_tier_change(self, partner_id: str, event_id: str) -> None:
        current = self.states[partner_id]
        if current.tier_change and current.tier_change.event_id == event_id:
            expired = current.tier_change.model_copy(update={"lease_until": 0})
            self.states[partner_id] = current.model_copy(update={"tier_change": expired})

    def finish_tier_change(
        self,
        partner_id: str,
        *,
        event_id: str,
        occurred_at_us: int,
        tier: str,
        status: PartnerStatus,
        held_status: PartnerStatus | None,
        updated_at: str,
        previous_tier: str,
        notified: bool,
    ) -> None:
        current = self.states[partner_id]
        if current.tier_change is None or current.tier_change.event_id != event_id:
            raise TierChangeInProgress(retry_after_seconds=5)
        self.states[partner_id] = TierChangeState(
            tier_event_at=occurred_at_us,
            tier_event_id=event_id,
            tier_event_previous_tier=previous_tier,
            tier_event_notified=notified,
        )
        partner = self.index.partners[partner_id]
        self.index.partners[partner_id] = partner.model_copy(
            update={"tier": tier, "status": status, "held_status": held_status, "updated_at": updated_at}
        )


# --- Key rotation (core.key_rotation) -------------------------------------------------------------------------


class MemoryKeyGateway(KeyIssuer):
    """API Gateway's keys, their plans and each key's remaining quota; `fail` names an operation that raises once."""

    def __init__(self, plans: Iterable[UsagePlan] = (), fail: str | None = None) -> None:
        self.plans = list(plans)
        self.keys: dict[str, dict[str, Any]] = {}  # id -> {"value", "enabled", "plan", "remaining", "used"}
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    def _call(self, operation: str, key_id: str) -> None:
        self.calls.append((operation, key_id))
        if self.fail == operation:
            self.fail = None
            raise RuntimeError(f"{operation} failed")

    def add_key(self, key_id: str, plan_id: str, used: int = 0, remaining: int = 0) -> None:
        self.keys[key_id] = {"value": f"value-of-{key_id}", "enabled": True, "plan": plan_id, "used": used}
        self.keys[key_id]["remaining"] = remaining

    def list_usage_plans(self) -> list[UsagePlan]:
        return self.plans

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey:
        key_id = f"k{next(self._ids)}"
        self._call("create_disabled_key", key_id)
        self.keys[key_id] = {"value": f"NEW{key_id}value", "enabled": False, "plan": None, "used": 0, "remaining": 0}
        return IssuedKey(id=key_id, value=SecretStr(self.keys[key_id]["value"]))

    def attach_key(self, plan_id: str, key_id: str) -> None:
        self._call("attach_key", key_id)
        self.keys[key_id]["plan"] = plan_id

    def enable_key(self, key_id: str) -> None:
        self._call("enable_key", key_id)
        self.keys[key_id]["enabled"] = True

    def delete_key(self, key_id: str) -> None:
        self._call("delete_key", key_id)
        self.keys.pop(key_id, None)

    def key_usage(self, plan_id: str, key_id: str, start: date, end: date) -> list[DailyUsage]:
        self._call("key_usage", key_id)
        key = self.keys.get(key_id)
        if key is None or key["plan"] != plan_id:
            return []
        return [DailyUsage(used=key["used"], remaining=key["remaining"])]

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None:
        self._call("set_remaining_quota", key_id)
        self.keys[key_id]["remaining"] = remaining

    def live(self) -> set[str]:
        return set(self.keys)


class MemoryRetiredKeys(RetiredKeys):
    """RETIRE# items and the partner records they switch, over a MemoryPartnerIndex's records."""

    def __init__(self, index: "MemoryPartnerIndex", fail: str | None = None) -> None:
        self.index = index
        self.retirements: dict[str, Retirement] = {}
        self.key_index: dict[str, str] = {}
        self.fail = fail

    def _maybe_fail(self, operation: str) -> None:
        if self.fail == operation:
            self.fail = None
            raise RuntimeError(f"{operation} failed")

    def retire_later(self, retirement: Retirement) -> None:
        self._maybe_fail("retire_later")
        self.retirements[retirement.api_key_id] = retirement

    def switch_key(self, before: Partner, after: Partner, retire_old: Retirement | None, now: float) -> None:
        self._maybe_fail("switch_key")
        current = self.index.partners[before.partner_id]
        if (current.api_key_id, current.status, current.tier) != (before.api_key_id, before.status, before.tier):
            raise TierChangeInProgress(retry_after_seconds=5)
        self.index.partners[before.partner_id] = after
        self.key_index[after.api_key_id] = after.partner_id
        self.retirements.pop(after.api_key_id, None)
        if retire_old is not None:
            self.retirements[retire_old.api_key_id] = retire_old

    def drop_retirement(self, retirement: Retirement) -> None:
        self._maybe_fail("drop_retirement")
        if self.retirements.get(retirement.api_key_id) == retirement:
            del self.retirements[retirement.api_key_id]

    def due_retirements(self, now: float) -> list[Retirement]:
        return sorted((r for r in self.retirements.values() if r.due_at <= now), key=lambda r: r.due_at)


class MemoryLedgerCarry(LedgerCarry):
    """Ledger items by (key id, period start): `requests`, `committed_tokens`, `carried_tokens`, `carried_requests`."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, datetime], dict[str, int]] = {}

    def standing(self, api_key_id: str, period_start: datetime) -> CarriedLedger:
        item = self.items.get((api_key_id, period_start), {})
        return CarriedLedger(requests=item.get("requests", 0), tokens=item.get("committed_tokens", 0))

    def start(
        self,
        api_key_id: str,
        period_start: datetime,
        period_reset: datetime,
        partner: Partner,
        *,
        carried: CarriedLedger,
        carried_requests: int,
    ) -> None:
        self.items.setdefault(
            (api_key_id, period_start),
            {
                "carried_tokens": carried.tokens,
                "committed_tokens": carried.tokens,
                "carried_requests": carried_requests,
            },
        )


FREE_PLAN = UsagePlan(
    id="plan-free",
    name="test-free",
    limits=TierLimits(rate_limit=5, burst_limit=10, quota_limit=100, quota_period="DAY"),
)


def memory_rotation(
    index: "MemoryPartnerIndex",
    gateway: MemoryKeyGateway | None = None,
    records: MemoryRetiredKeys | None = None,
    ledger: MemoryLedgerCarry | None = None,
    clock: float = 1_780_000_000,
) -> KeyRotation:
    """A KeyRotation on the fakes, stack `test`, one tier `free` (plan-free: 100 requests a day)."""
    keys = gateway or MemoryKeyGateway([FREE_PLAN])

    class Plans:
        def list_usage_plans(self) -> list[UsagePlan]:
            return keys.plans

    return KeyRotation(
        "test",
        keys=keys,
        tiers=TierCatalog("test", Plans()),
        records=records or MemoryRetiredKeys(index),
        ledger=ledger or MemoryLedgerCarry(),
        clock=lambda: clock,
    )


def free_tier() -> Tier:
    return Tier(name="free", plan_id=FREE_PLAN.id, limits=FREE_PLAN.limits)


class MemoryUsageLedger(UsageLedger):
    """The ledger's items by (key id, period start), as the console writes them; `fail` makes the next grant
    raise (a DynamoDB write failing)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, datetime], LedgerTotals] = {}
        self.sent_alerts: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
        self.fail = False

    def grant(self, item: LedgerItem, requests: int, tokens: int, at: datetime) -> LedgerTotals:
        if self.fail:
            self.fail = False
            raise RuntimeError("UpdateItem failed")
        key = (item.api_key_id, item.period_start)
        now = self.items.get(key, LedgerTotals())
        self.items[key] = replace(
            now,
            extension_requests=now.extension_requests + requests,
            extension_tokens=now.extension_tokens + tokens,
            extension_at=at.isoformat(),
        )
        return self.items[key]

    def totals(self, api_key_id: str, period_start: datetime) -> LedgerTotals:
        return self.items.get((api_key_id, period_start), LedgerTotals())

    def alerts(self, api_key_id: str, period_start: datetime) -> list[dict[str, Any]]:
        return self.sent_alerts.get((api_key_id, period_start), [])
