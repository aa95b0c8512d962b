"""Moving an API key between usage plans, and carrying the quota period's usage over to the new plan. Kernel code:
the billing webhook's tier changes and the operator console's use the same moves.

API Gateway allows a key in one usage plan per API stage, so a move is DeleteUsagePlanKey then
CreateUsagePlanKey, with no other call between the two: until the attach, calls with the key get 403. If
the attach fails, the key is attached to its old plan again, so no partner is left without a plan.

API Gateway tracks usage per plan and key, so a key new to a plan would start the period with the full
quota. The carry-over rule (also in the README):
    remaining in the new plan = max(0, new plan's quota - carried - used in the new plan this period)
where `carried` is what the key used in the plan it left, counted over the new plan's current quota period
(GetUsage, read just before the move): the requests it made there, or, when both plans have the same
quota period, its limit minus what it had left (which also counts usage carried into that plan earlier),
whichever is more; of that, usage carried into the old plan that came from the new plan's own requests (a
round trip) counts once: `carry` takes the larger of the two. GetUsage can be up to 30 minutes behind on
AWS, so both counts also take the AI API's own ledger (MeteringTable, which counts every request as it
passes), whichever is more. The quota periods are those of `core.periods`; the first-period `offset` is not
applied (AWS does not report when a plan was created, and our plans set none).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from core.errors import TierChangeFailed
from core.models import Tier
from core.observability import logger
from core.periods import effective_limit, period_bounds
from core.ports import RequestCounts, UsagePlanGateway


@dataclass(frozen=True)
class CarriedUsage:
    """Requests to carry into a new plan; `carried_in` of them had been carried into the plan left."""

    requests: int
    carried_in: int = 0


@dataclass(frozen=True)
class QuotaWindow:
    """A quota period as far as it has gone: its first UTC day, and today."""

    start: date
    today: date


def quota_window(tier: Tier, now: datetime) -> QuotaWindow | None:
    """The tier's current quota period up to today; None when the tier has no quota."""
    period = tier.limits.quota_period
    if period is None or tier.limits.quota_limit is None:
        return None
    start, _ = period_bounds(period, now)
    return QuotaWindow(start=start.date(), today=now.astimezone(UTC).date())


def effective_quota(tier: Tier) -> int:
    assert tier.limits.quota_limit is not None
    return effective_limit(tier.limits.quota_limit, tier.limits.quota_offset, is_first_period=False)


class PlanMover:
    """Moves keys between the tiers' plans through the UsagePlanGateway port."""

    def __init__(self, plans: UsagePlanGateway, counts: RequestCounts | None = None) -> None:
        self._plans = plans
        self._counts = counts

    def current_tier(self, key_id: str, tiers: list[Tier]) -> Tier | None:
        """The tier whose plan holds the key now (API Gateway allows one per stage), or None."""
        by_plan = {tier.plan_id: tier for tier in tiers}
        holding = [by_plan[plan_id] for plan_id in self._plans.plans_of_key(key_id) if plan_id in by_plan]
        if len(holding) > 1:
            logger.error("key is in several tier plans", api_key_id=key_id, tiers=[tier.name for tier in holding])
        return holding[0] if holding else None

    def consumed(
        self, from_tier: Tier, key_id: str, window: QuotaWindow, same_period: bool, journal_carried: int | None
    ) -> CarriedUsage:
        """What the key used in `from_tier` that counts in `window` (the new plan's current quota period).

        With the same period, that includes what was carried into `from_tier`: its limit minus what it had
        left, or `journal_carried`, usage an interrupted earlier change meant to carry into it.
        """
        # From the start of from_tier's own period when it began earlier (a month plan left for a day plan):
        # the days before the window tell how much of the ledger's month item falls in the window.
        since = min(window.start, _period_start(from_tier, window.today))
        days = self._plans.key_usage(from_tier.plan_id, key_id, since, window.today)
        before = sum(day.used for day in days[: (window.start - since).days])
        in_window = days[(window.start - since).days :]
        used = sum(day.used for day in in_window)
        own_use = max(used, self._counted(from_tier, key_id, window, since, before))
        if not (same_period and in_window and from_tier.limits.quota_limit is not None):
            return CarriedUsage(own_use)
        carried_in = max(effective_quota(from_tier) - in_window[-1].remaining - used, journal_carried or 0, 0)
        return CarriedUsage(own_use + carried_in, carried_in)

    def own_usage(self, tier: Tier, key_id: str, window: QuotaWindow) -> int:
        """The key's requests in `tier`'s own plan within `window`: GetUsage's count or the ledger's, the larger."""
        reported = sum(day.used for day in self._plans.key_usage(tier.plan_id, key_id, window.start, window.today))
        return max(reported, self._counted(tier, key_id, window, window.start, 0))

    def _counted(self, tier: Tier, key_id: str, window: QuotaWindow, since: date, reported_before: int) -> int:
        """The ledger's count of the key's requests in `tier` within `window` (0 without a ledger).

        An item whose period began before the window (a longer period than the window's) also holds requests
        made before it: those, as GetUsage reports them for the days before the window, are taken off.
        """
        if self._counts is None:
            return 0
        items = self._counts.requests_since(key_id, datetime.combine(since, time(), tzinfo=UTC))
        counted = 0
        for item in items:
            if item.tier != tier.name or item.period_start.date() > window.today:
                continue
            inside = item.period_start.date() >= window.start
            counted += item.requests if inside else max(0, item.requests - reported_before)
        return counted

    def move(self, key_id: str, from_tier: Tier | None, to_tier: Tier) -> None:
        """Detach from `from_tier`, attach to `to_tier`; on a failed attach, attach to `from_tier` again."""
        if from_tier is not None:
            self._plans.detach_key(from_tier.plan_id, key_id)
        # Nothing may run between these two calls: until the attach, the key's calls get 403.
        try:
            self._plans.attach_key(to_tier.plan_id, key_id)
        except Exception as exc:
            back = self._put_back(key_id, from_tier)
            where = f"it is back on the {from_tier.name} plan" if back and from_tier else "it is in no plan"
            raise TierChangeFailed(
                f"API Gateway refused to attach the key to the {to_tier.name} plan ({type(exc).__name__}); {where}"
            ) from exc

    def _put_back(self, key_id: str, from_tier: Tier | None) -> bool:
        if from_tier is None:
            return False
        try:
            self._plans.attach_key(from_tier.plan_id, key_id)
        except Exception:
            # The event is answered with a retryable error: its retry attaches the key wherever it belongs.
            logger.exception("could not put the key back on its plan", api_key_id=key_id, tier=from_tier.name)
            return False
        return True

    def carry(self, key_id: str, to_tier: Tier, carried: int, window: QuotaWindow, carried_in: int = 0) -> int:
        """Set the key's remaining quota in `to_tier` for this period (UpdateUsage); the value set.

        Idempotent: `carried` is fixed before the move, and the new plan's own usage is read each time. The
        part of `carried` that had been carried into the old plan may hold the new plan's own requests (a
        round trip, pro -> enterprise -> pro): they count once, as the larger of the two.
        """
        own = self.own_usage(to_tier, key_id, window)
        remaining = max(0, effective_quota(to_tier) - (carried - carried_in) - max(carried_in, own))
        self._plans.set_remaining_quota(to_tier.plan_id, key_id, remaining)
        return remaining


def _period_start(tier: Tier, today: date) -> date:
    period = tier.limits.quota_period
    if period is None:
        return today
    return period_bounds(period, datetime.combine(today, time(), tzinfo=UTC))[0].date()
