"""The carry-over rule across quota periods, on the template's plans in the emulated account (GetUsage and
UpdateUsage from offline.apigateway_fidelity), on a fixed date: what counts is the new plan's current period."""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import boto3
import pytest

from core.adapters.apigateway import ApiGateway
from core.adapters.ledger_requests import LedgerRequests
from core.models import Tier
from core.plan_moves import PlanMover, quota_window
from core.tiers import TierCatalog
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def tiers(stack: ProvisionedStack) -> Iterator[dict[str, Tier]]:
    apigateway_fidelity.set_wall_clock(lambda: NOW)
    yield TierCatalog(stack.stack_name, ApiGateway()).all()
    apigateway_fidelity.set_wall_clock(None)


@pytest.fixture
def key_id(tiers: dict[str, Tier]) -> str:
    apigateway = boto3.client("apigateway")
    key = apigateway.create_api_key(name="carry-test", enabled=True)["id"]
    apigateway.create_usage_plan_key(usagePlanId=tiers["free"].plan_id, keyId=key, keyType="API_KEY")
    return key


def used(tier: Tier, key_id: str, day: date, requests: int) -> None:
    apigateway_fidelity.ledger().record(tier.plan_id, key_id, day, requests)


def remaining(tier: Tier, key_id: str) -> int:
    value = apigateway_fidelity.ledger().remaining(tier.plan_id, key_id, NOW)
    assert value is not None
    return value


def limit(tier: Tier) -> int:
    assert tier.limits.quota_limit is not None
    return tier.limits.quota_limit


def move_with_carry(
    tiers: dict[str, Tier], key_id: str, source: str, target: str, mover: PlanMover | None = None
) -> int:
    mover, window = mover or PlanMover(ApiGateway()), quota_window(tiers[target], NOW)
    assert window is not None
    same_period = tiers[source].limits.quota_period == tiers[target].limits.quota_period
    carried = mover.consumed(tiers[source], key_id, window, same_period, journal_carried=None)
    mover.move(key_id, tiers[source], tiers[target])
    mover.carry(key_id, tiers[target], carried.requests, window, carried.carried_in)
    return carried.requests


def test_a_day_plan_to_a_month_plan_carries_every_day_of_this_month(tiers: dict[str, Tier], key_id: str) -> None:
    # Given free (DAY) usage last month, earlier this month and today
    used(tiers["free"], key_id, date(2026, 2, 27), 20)
    used(tiers["free"], key_id, date(2026, 3, 2), 300)
    used(tiers["free"], key_id, date(2026, 3, 10), 50)

    # When the key moves to pro (MONTH) on March 10
    carried = move_with_carry(tiers, key_id, "free", "pro")

    # Then this month's 350 calls count against pro; February's do not
    assert carried == 350
    assert remaining(tiers["pro"], key_id) == limit(tiers["pro"]) - 350


def test_a_month_plan_to_a_day_plan_carries_only_today(tiers: dict[str, Tier], key_id: str) -> None:
    # Given a pro key that made 5000 calls yesterday and 10 today
    mover = PlanMover(ApiGateway())
    mover.move(key_id, tiers["free"], tiers["pro"])
    used(tiers["pro"], key_id, date(2026, 3, 9), 5000)
    used(tiers["pro"], key_id, date(2026, 3, 10), 10)

    # When it moves to free (DAY)
    carried = move_with_carry(tiers, key_id, "pro", "free")

    # Then only today's calls count against today's free quota
    assert carried == 10
    assert remaining(tiers["free"], key_id) == limit(tiers["free"]) - 10


def test_plans_with_the_same_period_also_carry_what_was_carried_before(tiers: dict[str, Tier], key_id: str) -> None:
    # Given a pro key that came with 500 calls carried over, then made 100 on pro
    used(tiers["free"], key_id, date(2026, 3, 10), 500)
    assert move_with_carry(tiers, key_id, "free", "pro") == 500
    used(tiers["pro"], key_id, date(2026, 3, 10), 100)

    # When it moves to enterprise (MONTH, like pro)
    carried = move_with_carry(tiers, key_id, "pro", "enterprise")

    # Then enterprise counts all 600
    assert carried == 600
    assert remaining(tiers["enterprise"], key_id) == limit(tiers["enterprise"]) - 600


def test_usage_beyond_the_new_quota_leaves_zero_not_a_negative_or_a_fresh_quota(
    tiers: dict[str, Tier], key_id: str
) -> None:
    mover = PlanMover(ApiGateway())
    mover.move(key_id, tiers["free"], tiers["pro"])
    used(tiers["pro"], key_id, date(2026, 3, 10), limit(tiers["free"]) * 3)

    move_with_carry(tiers, key_id, "pro", "free")

    assert remaining(tiers["free"], key_id) == 0


def test_usage_already_in_the_target_plan_counts_against_it_on_the_way_back(
    tiers: dict[str, Tier], key_id: str
) -> None:
    # Given a free key that made 20 calls today, moved to pro and made none there
    used(tiers["free"], key_id, date(2026, 3, 10), 20)
    move_with_carry(tiers, key_id, "free", "pro")

    # When it moves back to free the same day (free's own usage today is still 20)
    carried = move_with_carry(tiers, key_id, "pro", "free")

    # Then free has 980 left: its own 20 count once, none are forgiven or added
    assert carried == 0
    assert remaining(tiers["free"], key_id) == limit(tiers["free"]) - 20


# --- GetUsage lags up to 30 minutes on AWS: the ledger's own count is carried too ------------------------------


@pytest.fixture
def usage_lag() -> Iterator[None]:
    apigateway_fidelity.set_usage_lag(1800)
    yield
    apigateway_fidelity.set_usage_lag(None)


def used_long_ago(tier: Tier, key_id: str, day: date, requests: int) -> None:
    """Requests GetUsage reports already (made well before the lag)."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    apigateway_fidelity.ledger().record(tier.plan_id, key_id, day, requests, at=at)


def counted(stack: ProvisionedStack, tier: Tier, key_id: str, period_start: date, requests: int) -> None:
    """What the AI API's ledger counted for the key in the tier's period starting `period_start`."""
    boto3.client("dynamodb").update_item(
        TableName=stack.physical_ids["MeteringTable"],
        Key={"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": f"PERIOD#{period_start.isoformat()}T00:00:00Z"}},
        UpdateExpression="ADD requests :n SET tier = :tier",
        ExpressionAttributeValues={":n": {"N": str(requests)}, ":tier": {"S": tier.name}},
    )


def ledger_mover(stack: ProvisionedStack) -> PlanMover:
    return PlanMover(ApiGateway(), LedgerRequests(stack.physical_ids["MeteringTable"]))


@pytest.mark.usefixtures("usage_lag")
def test_an_upgrade_right_after_a_burst_carries_the_burst_getusage_does_not_show_yet(
    stack: ProvisionedStack, tiers: dict[str, Tier], key_id: str
) -> None:
    # Given a free key with 300 calls on March 2, and a burst of 50 just now that GetUsage does not show yet
    used_long_ago(tiers["free"], key_id, date(2026, 3, 2), 300)
    used(tiers["free"], key_id, date(2026, 3, 10), 50)
    counted(stack, tiers["free"], key_id, date(2026, 3, 2), 300)
    counted(stack, tiers["free"], key_id, date(2026, 3, 10), 50)
    assert sum(day.used for day in ApiGateway().key_usage(tiers["free"].plan_id, key_id, NOW.date(), NOW.date())) == 0

    # When the key moves to pro (MONTH)
    carried = move_with_carry(tiers, key_id, "free", "pro", ledger_mover(stack))

    # Then the burst counts too: the ledger saw all 350
    assert carried == 350
    assert remaining(tiers["pro"], key_id) == limit(tiers["pro"]) - 350


@pytest.mark.usefixtures("usage_lag")
def test_a_downgrade_right_after_a_burst_carries_todays_part_of_the_ledgers_month(
    stack: ProvisionedStack, tiers: dict[str, Tier], key_id: str
) -> None:
    # Given a pro key (MONTH) with 5000 calls yesterday and a burst of 10 just now (not in GetUsage yet)
    PlanMover(ApiGateway()).move(key_id, tiers["free"], tiers["pro"])
    used_long_ago(tiers["pro"], key_id, date(2026, 3, 9), 5000)
    used(tiers["pro"], key_id, date(2026, 3, 10), 10)
    counted(stack, tiers["pro"], key_id, date(2026, 3, 1), 5010)

    # When it moves to free (DAY)
    carried = move_with_carry(tiers, key_id, "pro", "free", ledger_mover(stack))

    # Then today's 10 count against free: the month's 5010 less the 5000 GetUsage reports before today
    assert carried == 10
    assert remaining(tiers["free"], key_id) == limit(tiers["free"]) - 10


@pytest.mark.usefixtures("usage_lag")
def test_usage_in_the_target_plan_that_getusage_does_not_show_yet_counts_on_the_way_back(
    stack: ProvisionedStack, tiers: dict[str, Tier], key_id: str
) -> None:
    # Given a free key with 20 calls just now (not in GetUsage yet), moved to pro
    used(tiers["free"], key_id, date(2026, 3, 10), 20)
    counted(stack, tiers["free"], key_id, date(2026, 3, 10), 20)
    move_with_carry(tiers, key_id, "free", "pro", ledger_mover(stack))

    # When it moves back to free the same day
    move_with_carry(tiers, key_id, "pro", "free", ledger_mover(stack))

    # Then its own 20 calls in free still count
    assert remaining(tiers["free"], key_id) == limit(tiers["free"]) - 20


def test_a_round_trip_between_plans_of_the_same_period_counts_each_request_once(
    tiers: dict[str, Tier], key_id: str
) -> None:
    # Given a pro key (MONTH) with 100 calls, moved to enterprise (MONTH) where it made 50
    mover = PlanMover(ApiGateway())
    mover.move(key_id, tiers["free"], tiers["pro"])
    used(tiers["pro"], key_id, date(2026, 3, 10), 100)
    move_with_carry(tiers, key_id, "pro", "enterprise")
    used(tiers["enterprise"], key_id, date(2026, 3, 10), 50)

    # When it moves back to pro in the same month
    move_with_carry(tiers, key_id, "enterprise", "pro")

    # Then pro counts the period's 150 calls, the first 100 once
    assert remaining(tiers["pro"], key_id) == limit(tiers["pro"]) - 150
