"""An operator's tier change with in-memory ports: the kernel's plan moves and order (core.tier_changes), the
stamp among billing events, holds kept, and refusals recorded."""

from datetime import UTC, datetime

import pytest

from core.admin.models import Operator
from core.admin.service import AdminService
from core.admin.settings import AdminSettings
from core.errors import TierChangeInProgress, UnknownTier
from core.models import PartnerStatus, PendingTierChange, TierChangeState, TierLimits, UsagePlan
from tests.fakes import (
    MemoryApiKeys,
    MemoryAuditLog,
    MemoryPartnerIndex,
    MemoryPlans,
    MemoryTierState,
    OperatorTopic,
    active_partner,
)

OPERATOR = Operator(arn="arn:aws:iam::123456789012:user/alice", request_id="r-1")
SETTINGS = AdminSettings(
    stack_name="s", partners_table="p", metering_table="m", alert_topic_arn="arn:aws:sns:us-east-1:1:t"
)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
PLANS = [
    UsagePlan(id="pl-free", name="s-free", limits=TierLimits(quota_limit=100, quota_period="DAY")),
    UsagePlan(id="pl-pro", name="s-pro", limits=TierLimits(quota_limit=10_000, quota_period="MONTH")),
    UsagePlan(id="pl-ent", name="s-enterprise", limits=TierLimits(quota_limit=100_000, quota_period="MONTH")),
]


class Console:
    def __init__(self, status: PartnerStatus = PartnerStatus.ACTIVE) -> None:
        self.index = MemoryPartnerIndex([active_partner("k1", status=status)])
        self.plans = MemoryPlans(PLANS)
        self.plans.attach_key("pl-free", "k1")
        self.plans.calls.clear()
        self.state = MemoryTierState(self.index)
        self.audit, self.topic = MemoryAuditLog(), OperatorTopic()
        self.admin = AdminService(
            SETTINGS,
            partners=self.index,
            audit=self.audit,
            notifier=self.topic,
            keys=MemoryApiKeys(),
            plans=self.plans,
            tier_state=self.state,
            clock=lambda: NOW,
        )


def test_a_tier_change_moves_the_key_carries_todays_usage_and_is_stamped_now() -> None:
    console = Console()
    console.plans.used[("pl-free", "k1")] = 30

    result = console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract")

    assert (result.partner.tier, result.partner.status, result.audit.outcome) == ("pro", "ACTIVE", "applied")
    assert console.plans.plans_of_key("k1") == ["pl-pro"]
    assert console.plans.remaining("pl-pro", "k1") == 10_000 - 30
    state = console.state.states["p_k1"]
    assert state.tier_event_at == int(NOW * 1_000_000)
    assert (state.tier_event_id or "").startswith("operator:") and state.tier_event_notified
    assert result.audit.details["remaining"] == 10_000 - 30
    [(_, message, attributes)] = console.topic.published
    assert attributes == {"kind": "operator-action", "action": "tier", "partner_id": "p_k1"}
    assert isinstance(message, dict) and message["details"]["tier"] == "pro"


def test_a_change_after_a_billing_event_stamped_ahead_of_our_clock_is_ordered_after_it() -> None:
    console = Console()
    ahead = int(NOW * 1_000_000) + 5_000_000
    console.state.states["p_k1"] = TierChangeState(tier_event_at=ahead, tier_event_id="evt_ahead")

    console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract")

    assert console.state.states["p_k1"].tier_event_at == ahead + 1


def test_a_cancelled_partner_becomes_active_as_a_subscription_would_make_it() -> None:
    console = Console(PartnerStatus.DISABLED)
    result = console.admin.change_tier(OPERATOR, "p_k1", "enterprise", "sales-led deal")
    assert (result.partner.status, console.plans.enabled["k1"]) == ("ACTIVE", True)
    assert result.audit.details["previous_status"] == "DISABLED"


@pytest.mark.parametrize("held", [PartnerStatus.SUSPENDED, PartnerStatus.REVOKED, PartnerStatus.DORMANT])
def test_a_held_or_keyless_partner_keeps_its_status_and_gets_the_tier_recorded(held: PartnerStatus) -> None:
    console = Console(held)

    result = console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract")

    partner = console.index.partners["p_k1"]
    assert (partner.tier, partner.status, partner.held_status) == ("pro", held, PartnerStatus.ACTIVE)
    assert console.plans.enabled.get("k1") is not True
    moved = held is PartnerStatus.SUSPENDED  # a keyless partner has no key to move
    assert console.plans.plans_of_key("k1") == (["pl-pro"] if moved else ["pl-free"])
    assert result.audit.details["moved"] == int(moved)


def test_an_unknown_tier_is_refused_before_anything_is_recorded() -> None:
    console = Console()
    with pytest.raises(UnknownTier):
        console.admin.change_tier(OPERATOR, "p_k1", "platinum", "contract")
    assert console.audit.entries == {} and console.plans.calls == []


def test_a_live_billing_lock_refuses_the_change_and_the_trail_says_so() -> None:
    console = Console()
    busy = PendingTierChange(event_id="evt_1", to_tier="pro", to_status=PartnerStatus.ACTIVE, lease_until=int(NOW) + 30)
    console.state.states["p_k1"] = TierChangeState(tier_change=busy)

    with pytest.raises(TierChangeInProgress):
        console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract")

    [entry] = console.audit.entries.values()
    assert (entry.outcome, entry.details) == ("refused", {"error": "TierChangeInProgress"})
    assert console.plans.plans_of_key("k1") == ["pl-free"] and console.topic.published == []


def test_the_same_tier_again_changes_nothing_and_sets_the_same_remaining() -> None:
    console = Console()
    console.plans.used[("pl-free", "k1")] = 12
    console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract")
    again = console.admin.change_tier(OPERATOR, "p_k1", "pro", "contract, again")
    assert (again.audit.details["changed"], again.audit.details["moved"]) == (0, 0)
    assert console.plans.remaining("pl-pro", "k1") == 10_000 - 12
