"""Tier discovery by plan name, and the signup configuration read from the environment."""

import pytest
from pydantic import ValidationError

from core.errors import UnknownTier
from core.models import IssuedKey, TierLimits, UsagePlan
from core.signup.settings import SignupSettings
from core.tiers import TierCatalog


class PlansOnly:
    """A UsagePlanGateway fake answering GetUsagePlans only (the catalog's sole call)."""

    def __init__(self, plans: list[UsagePlan]) -> None:
        self.plans = plans
        self.reads = 0

    def list_usage_plans(self) -> list[UsagePlan]:
        self.reads += 1
        return self.plans

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey:
        raise NotImplementedError

    def attach_key(self, plan_id: str, key_id: str) -> None:
        raise NotImplementedError

    def enable_key(self, key_id: str) -> None:
        raise NotImplementedError

    def delete_key(self, key_id: str) -> None:
        raise NotImplementedError

    def find_key_ids(self, name: str) -> list[str]:
        raise NotImplementedError

    def read_key_value(self, key_id: str) -> str:
        raise NotImplementedError


def plan(plan_id: str, name: str) -> UsagePlan:
    return UsagePlan(id=plan_id, name=name, limits=TierLimits(rate_limit=1, burst_limit=1))


def test_tiers_are_this_stacks_plans_by_name() -> None:
    plans = PlansOnly(
        [plan("1", "shop-free"), plan("2", "shop-pro"), plan("3", "shop-dev-free"), plan("4", "other-gold")]
    )
    catalog = TierCatalog("shop", plans)

    # shop-dev-free belongs to stack "shop-dev": "dev-free" is no tier name
    assert sorted(catalog.all()) == ["free", "pro"]
    assert catalog.get("pro").plan_id == "2"
    with pytest.raises(UnknownTier, match="free, pro"):
        catalog.get("gold")


def test_tiers_are_read_once_per_ttl() -> None:
    now = [0.0]
    plans = PlansOnly([plan("1", "shop-free")])
    catalog = TierCatalog("shop", plans, ttl_seconds=300, clock=lambda: now[0])

    catalog.all()
    now[0] = 299
    catalog.all()
    assert plans.reads == 1
    now[0] = 300
    catalog.all()
    assert plans.reads == 2


def test_self_service_tiers_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_NAME", "shop")
    monkeypatch.setenv("PARTNERS_TABLE", "t")
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "i")
    monkeypatch.setenv("SELF_SERVICE_TIERS", "free, trial")

    assert SignupSettings().self_service_tiers == ("free", "trial")

    monkeypatch.setenv("SELF_SERVICE_TIERS", " , ")
    with pytest.raises(ValidationError, match="at least one"):
        SignupSettings()


def test_missing_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACK_NAME", raising=False)
    with pytest.raises(ValidationError, match="stack_name"):
        SignupSettings(partners_table="t", idempotency_table="i")
