"""A usage extension with in-memory ports: UpdateUsage to what is left plus the grant, the ledger second, the
requests taken back when the ledger write fails (and the trail saying so when that fails too)."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.admin.models import ExtensionRequest, Operator
from core.admin.ports import LedgerTotals
from core.admin.service import AdminService
from core.admin.settings import AdminSettings
from core.errors import InvalidRequest, PartnerNotActive
from core.models import PartnerStatus, TierLimits, UsagePlan
from core.tier_policy import TierPolicy
from tests.fakes import (
    MemoryApiKeys,
    MemoryAuditLog,
    MemoryPartnerIndex,
    MemoryPlans,
    MemoryTierState,
    MemoryUsageLedger,
    OperatorTopic,
    active_partner,
)

OPERATOR = Operator(arn="arn:aws:iam::123456789012:user/alice", request_id="r-1")
POLICY = {"models": ("*",), "default_max_tokens": 10, "rate_limit": 5, "burst_limit": 10}
SETTINGS = AdminSettings(
    stack_name="s",
    partners_table="p",
    metering_table="m",
    alert_topic_arn="arn:aws:sns:us-east-1:1:t",
    tiers={
        "free": TierPolicy(**POLICY, token_budget=1000, quota_limit=100, quota_period="DAY"),
        "open": TierPolicy(**POLICY, token_budget=0, quota_limit=0, quota_period="DAY"),
    },
)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
PLANS = [
    UsagePlan(id="pl-free", name="s-free", limits=TierLimits(quota_limit=100, quota_period="DAY")),
    UsagePlan(id="pl-open", name="s-open", limits=TierLimits()),
]


class FailingTakeBack(MemoryPlans):
    """UpdateUsage works once (the grant), then fails (the take-back)."""

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None:
        if any(call[0] == "update_usage" for call in self.calls):
            raise RuntimeError("UpdateUsage failed")
        super().set_remaining_quota(plan_id, key_id, remaining)


def console(
    status: PartnerStatus = PartnerStatus.ACTIVE, plans: MemoryPlans | None = None, tier: str = "free"
) -> tuple[AdminService, MemoryPlans, MemoryUsageLedger, MemoryAuditLog]:
    index = MemoryPartnerIndex([active_partner("k1", status=status, tier=tier)])
    plans = plans or MemoryPlans(PLANS)
    plans.attach_key(f"pl-{tier}", "k1")
    ledger, audit = MemoryUsageLedger(), MemoryAuditLog()
    admin = AdminService(
        SETTINGS,
        partners=index,
        audit=audit,
        notifier=OperatorTopic(),
        keys=MemoryApiKeys(),
        plans=plans,
        tier_state=MemoryTierState(index),
        ledger=ledger,
        clock=NOW.timestamp,
    )
    return admin, plans, ledger, audit


def test_requests_go_to_update_usage_on_top_of_what_is_left_and_tokens_to_the_ledger() -> None:
    admin, plans, ledger, _ = console()
    plans.used[("pl-free", "k1")] = 100  # at its quota

    result = admin.extend(OPERATOR, "p_k1", 7, 500, "launch")

    assert plans.remaining("pl-free", "k1") == 7
    [(key, totals)] = ledger.items.items()
    assert key == ("k1", datetime(2026, 3, 10, tzinfo=UTC))  # the DAY period the AI API keys its item by
    assert (totals.extension_requests, totals.extension_tokens) == (7, 500)
    assert result.audit.details["remaining_after"] == 7 and result.audit.outcome == "applied"


def test_a_tokens_only_extension_never_touches_api_gateways_usage() -> None:
    admin, plans, ledger, _ = console()
    admin.extend(OPERATOR, "p_k1", 0, 500, "launch")
    assert not [call for call in plans.calls if call[0] in ("get_usage", "update_usage")]
    assert next(iter(ledger.items.values())).extension_tokens == 500


@pytest.mark.parametrize("status", [PartnerStatus.SUSPENDED, PartnerStatus.REVOKED, PartnerStatus.DISABLED])
def test_only_an_active_partner_gets_an_extension(status: PartnerStatus) -> None:
    admin, plans, ledger, audit = console(status)
    with pytest.raises(PartnerNotActive):
        admin.extend(OPERATOR, "p_k1", 5, 5, "x")
    assert ledger.items == {} and not [call for call in plans.calls if call[0] == "update_usage"]
    assert [entry.outcome for entry in audit.entries.values()] == ["refused"]


def test_a_tier_without_a_quota_or_budget_cannot_take_that_part() -> None:
    admin, _, ledger, _ = console(tier="open")
    with pytest.raises(InvalidRequest) as refused:
        admin.extend(OPERATOR, "p_k1", 5, 5, "x")
    assert [detail["field"] for detail in refused.value.details] == ["requests", "tokens"]
    assert ledger.items == {}


def test_a_failed_ledger_write_takes_the_requests_back() -> None:
    admin, plans, ledger, audit = console()
    ledger.fail = True
    with pytest.raises(RuntimeError):
        admin.extend(OPERATOR, "p_k1", 5, 5, "x")
    assert plans.remaining("pl-free", "k1") == 100
    [entry] = audit.entries.values()
    assert (entry.outcome, entry.details) == ("failed", {"error": "RuntimeError"})


def test_when_taking_the_requests_back_fails_too_the_trail_says_what_was_left() -> None:
    admin, plans, ledger, audit = console(plans=FailingTakeBack(PLANS))
    ledger.fail = True
    with pytest.raises(RuntimeError):
        admin.extend(OPERATOR, "p_k1", 5, 5, "x")
    assert plans.remaining("pl-free", "k1") == 105
    [entry] = audit.entries.values()
    assert entry.details == {"error": "RuntimeError", "requests_granted": 5, "ledger_recorded": 0}


@pytest.mark.parametrize(
    "body",
    [
        '{"requests": -1, "reason": "x"}',
        '{"requests": 0, "tokens": 0, "reason": "x"}',
        '{"requests": "5", "reason": "x"}',
        '{"requests": 5.0, "reason": "x"}',
        '{"requests": true, "reason": "x"}',
        '{"requests": 10000001, "reason": "x"}',
        '{"tokens": 10000000001, "reason": "x"}',
        '{"requests": 5}',
        '{"requests": 5, "reason": "x", "extra": 1}',
    ],
)
def test_an_extension_body_takes_whole_numbers_in_bounds_only(body: str) -> None:
    with pytest.raises(ValidationError):
        ExtensionRequest.model_validate_json(body)


# --- The partner's standing this period (GET /admin/partners/{id}) -------------------------------------------------


class BrokenLedger(MemoryUsageLedger):
    def totals(self, api_key_id: str, period_start: datetime) -> LedgerTotals:
        raise RuntimeError("DynamoDB is down")


def test_the_standing_has_getusages_requests_the_ledgers_tokens_and_the_alerts_sent() -> None:
    admin, plans, ledger, _ = console()
    plans.used[("pl-free", "k1")] = 90
    admin.extend(OPERATOR, "p_k1", 20, 300, "launch")
    period = datetime(2026, 3, 10, tzinfo=UTC)
    ledger.items[("k1", period)] = replace(
        ledger.items[("k1", period)], requests=90, prompt_tokens=700, carried_tokens=50
    )
    ledger.sent_alerts[("k1", period)] = [{"threshold": 80, "sent_at": "2026-03-10T10:00:00+00:00"}]

    standing = admin.show_partner("p_k1").standing

    assert standing["period"] == {"start": "2026-03-10T00:00:00Z", "resets_at": "2026-03-11T00:00:00Z"}
    assert standing["requests"] == {
        "source": "GetUsage", "used": 90, "remaining": 30, "limit": 120, "extension": 20, "ledger_count": 90,
    }  # fmt: skip
    assert standing["tokens"] == {
        "prompt": 700, "completion": 0, "used": 750, "reserved": 0, "carried": 50, "extension": 300,
        "budget": 1300, "remaining": 550,
    }  # fmt: skip
    assert standing["alerts"] == [{"threshold": 80, "sent_at": "2026-03-10T10:00:00+00:00"}]


def test_a_part_that_cannot_be_read_says_so_and_the_rest_is_shown() -> None:
    index = MemoryPartnerIndex([active_partner("k1")])
    plans = MemoryPlans(PLANS)
    plans.attach_key("pl-free", "k1")
    admin = AdminService(
        SETTINGS,
        partners=index,
        audit=MemoryAuditLog(),
        notifier=OperatorTopic(),
        keys=MemoryApiKeys(),
        plans=plans,
        tier_state=MemoryTierState(index),
        ledger=BrokenLedger(),
        clock=NOW.timestamp,
    )
    standing = admin.show_partner("p_k1").standing
    assert standing["tokens"] == {"error": "unavailable (RuntimeError)"}
    assert standing["requests"]["used"] == 0 and standing["requests"]["extension"] is None


def test_a_keyless_partner_has_no_requests_to_read() -> None:
    admin, plans, _, _ = console(PartnerStatus.REVOKED)
    standing = admin.show_partner("p_k1").standing
    assert "requests" not in standing and "tokens" in standing
    assert not [call for call in plans.calls if call[0] == "get_usage"]
