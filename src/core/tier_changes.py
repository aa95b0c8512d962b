"""Applying a tier change to a partner: the billing webhook's events and operators' tier changes (issue 13) alike.

Changes are ordered per partner by their event time (`occurred_at_us`, ties by event id: TierChangeState.is_newer);
the caller checks that a change is newer than the last applied one before applying it. One change at a time holds
the partner's lock (a lease on the partner record, PendingTierChange), which also journals the usage to carry over,
so a change that dies half-way is finished by the next attempt instead of being lost:
1. plan from reads only: where the key is, where it goes, the usage to carry (core.plan_moves);
2. take the lock (conditional on nothing having moved since the reads);
3. the API Gateway side: disable (a cancellation), move, carry the period's usage, enable (last);
4. record the change and drop the lock in one write.
An operator's hold (SUSPENDED, REVOKED) wins over any tier change: its tier is recorded, its status is kept for
resuming. A keyless partner (REVOKED, DORMANT) has only its record changed.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import TierChangeInProgress
from core.models import (
    KEYLESS,
    OPERATOR_HOLDS,
    Partner,
    PartnerStatus,
    PendingTierChange,
    Tier,
    TierChangeState,
)
from core.observability import logger
from core.plan_moves import CarriedUsage, PlanMover, QuotaWindow, quota_window
from core.ports import RequestCounts, TierChangeLock, UsagePlanGateway


@dataclass(frozen=True)
class OrderedTierChange:
    """A change asked for: its place in the partner's order, the tier, and the status it gives a partner that no
    operator holds (ACTIVE: the key enabled; DISABLED: a cancelled subscription, the key disabled)."""

    event_id: str
    occurred_at_us: int
    to_tier: Tier
    status: PartnerStatus


@dataclass(frozen=True)
class PlannedChange:
    """One change, planned from reads only; `journal` is what the partner's lock records."""

    request: OrderedTierChange
    partner: Partner
    state: TierChangeState
    at: datetime
    from_tier: Tier | None
    to_tier: Tier
    to_status: PartnerStatus
    moving: bool
    window: QuotaWindow | None
    journal: PendingTierChange
    # An operator holds the partner (SUSPENDED, REVOKED): the status the change would give it, kept for resuming.
    held_status: PartnerStatus | None = None

    @property
    def changes_partner(self) -> bool:
        return (self.partner.tier, self.partner.status) != (self.to_tier.name, self.to_status)


@dataclass(frozen=True)
class AppliedTierChange:
    plan: PlannedChange
    remaining: int | None  # the remaining quota set in the new plan, if any


class TierChanger:
    """Applies ordered tier changes to partners under the partner's lock, moving keys with core.plan_moves."""

    def __init__(
        self,
        plans: UsagePlanGateway,
        records: TierChangeLock,
        counts: RequestCounts | None,
        lease_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._plans = plans
        self._mover = PlanMover(plans, counts)
        self._records = records
        self._lease_seconds = lease_seconds
        self._clock = clock

    def apply(
        self, partner: Partner, state: TierChangeState, change: OrderedTierChange, tiers: list[Tier], notify: bool
    ) -> AppliedTierChange:
        """Apply `change` (newer than the last applied one: the caller checked) to the partner read with `state`.

        `notify`: the caller will publish a change that changes the partner and mark it notified then; otherwise
        the record says it is notified already. TierChangeInProgress while another change holds the lock.
        """
        now = self._clock()
        if state.tier_change is not None and state.tier_change.lease_until > now:
            raise TierChangeInProgress(retry_after_seconds=max(1, int(state.tier_change.lease_until - now)))
        planned = self._plan(change, partner, state, tiers, now)
        self._records.begin_tier_change(partner.partner_id, planned.journal, state, partner.status, now)
        try:
            remaining = self._apply_to_key(planned)
        except Exception:
            self._release(partner.partner_id, change.event_id)
            raise
        self._records.finish_tier_change(
            partner.partner_id,
            event_id=change.event_id,
            occurred_at_us=change.occurred_at_us,
            tier=planned.to_tier.name,
            status=planned.to_status,
            held_status=planned.held_status,
            updated_at=planned.at.isoformat(),
            previous_tier=partner.tier,
            notified=not (notify and planned.changes_partner),
        )
        return AppliedTierChange(planned, remaining)

    def _plan(
        self, change: OrderedTierChange, partner: Partner, state: TierChangeState, tiers: list[Tier], now: float
    ) -> PlannedChange:
        """Where the key is, where it goes, and the usage to carry: all read before anything changes."""
        at = datetime.fromtimestamp(now, UTC)
        to_tier = change.to_tier
        # An operator's hold wins over billing: the change's tier is applied, its status is kept for resuming.
        # So does a partner without a key (revoked, or dormant): the change is the record's only.
        keyless = partner.status in KEYLESS
        held = partner.status in OPERATOR_HOLDS or keyless
        to_status = partner.status if held else change.status
        from_tier = None if keyless else self._mover.current_tier(partner.api_key_id, tiers)
        window = quota_window(to_tier, at)
        moving = not keyless and (from_tier is None or from_tier.plan_id != to_tier.plan_id)
        carried = None if keyless else self._carried(partner.api_key_id, from_tier, to_tier, window, state.tier_change)
        # The lock journals the usage to carry, read before the move: after it, the old plan no longer reports it.
        journal = PendingTierChange(
            event_id=change.event_id,
            to_tier=to_tier.name,
            to_status=to_status,
            lease_until=int(now) + self._lease_seconds,
            carried=carried.requests if carried else None,
            carried_in=carried.carried_in if carried else 0,
            window_start=window.start.isoformat() if window and carried is not None else None,
        )
        return PlannedChange(
            change, partner, state, at, from_tier, to_tier, to_status, moving, window, journal,
            held_status=change.status if held else None,
        )  # fmt: skip

    def _carried(
        self,
        key_id: str,
        from_tier: Tier | None,
        to_tier: Tier,
        window: QuotaWindow | None,
        journal: PendingTierChange | None,
    ) -> CarriedUsage | None:
        """The usage to carry into `to_tier`: None when nothing is carried (no move, or no quota there)."""
        if window is None:
            return None
        # An interrupted change's journal is good for the same quota period only.
        journaled = (
            CarriedUsage(journal.carried, journal.carried_in)
            if journal and journal.carried is not None and journal.window_start == window.start.isoformat()
            else None
        )
        if from_tier is not None and from_tier.plan_id == to_tier.plan_id:
            # Finishing an interrupted change into this same plan: its carry may not have been made.
            return journaled if journal and journal.to_tier == to_tier.name else None
        if from_tier is None:
            # The key is in no plan: an earlier change died between detaching and attaching.
            if journaled is None:
                logger.warning("key in no plan and no journal: nothing to carry over", api_key_id=key_id)
            return journaled or CarriedUsage(0)
        same_period = from_tier.limits.quota_period == to_tier.limits.quota_period
        into_from = journaled.requests if journaled and journal and journal.to_tier == from_tier.name else None
        return self._mover.consumed(from_tier, key_id, window, same_period, into_from)

    def _apply_to_key(self, change: PlannedChange) -> int | None:
        """The API Gateway side of a change; the remaining quota set in the new plan, if any."""
        key_id = change.partner.api_key_id
        remaining = None
        if change.partner.status in KEYLESS:
            return None
        if change.to_status is PartnerStatus.DISABLED:
            # Disabled first: a cancelled partner's key stops working before anything else happens.
            self._plans.disable_key(key_id)
        if change.moving:
            self._mover.move(key_id, change.from_tier, change.to_tier)
        carried = change.journal.carried
        if carried is not None and change.window is not None:
            remaining = self._mover.carry(key_id, change.to_tier, carried, change.window, change.journal.carried_in)
        was_active = change.partner.status is PartnerStatus.ACTIVE
        if change.to_status is PartnerStatus.ACTIVE and (not was_active or change.state.tier_change is not None):
            # Enabled last, once the key sits in its new plan with its usage carried over. After an
            # interrupted change the key's state is unknown: enable it again (idempotent).
            self._plans.enable_key(key_id)
        return remaining

    def _release(self, partner_id: str, event_id: str) -> None:
        try:
            self._records.release_tier_change(partner_id, event_id)
        except Exception:
            # The lease expires on its own; the next attempt takes over after it.
            logger.exception("could not release the change lock", partner_id=partner_id, event_id=event_id)
