"""The usage export's attribution rules with in-memory ports: which ledger items and GetUsage rows count in
which partner's row for which quota period."""

from collections.abc import Iterator
from datetime import UTC, date, datetime

from core.admin.models import LedgerUsage
from core.admin.usage_export import UsageExporter, parse_period
from core.models import Tier, TierLimits
from tests.fakes import MemoryPartnerIndex, active_partner

TIERS = {
    "free": Tier(name="free", plan_id="plan-free", limits=TierLimits(quota_limit=100, quota_period="DAY")),
    "pro": Tier(name="pro", plan_id="plan-pro", limits=TierLimits(quota_limit=1000, quota_period="MONTH")),
}


class Usage:
    def __init__(self, by_plan: dict[str, dict[str, list[list[int]]]]) -> None:
        self.by_plan = by_plan
        self.asked: list[tuple[str, date, date]] = []

    def usage_pages(self, plan_id: str, start: date, end: date, page_size: int) -> Iterator[dict[str, list[list[int]]]]:
        self.asked.append((plan_id, start, end))
        yield self.by_plan.get(plan_id, {})


class Ledger:
    def __init__(self, items: list[LedgerUsage]) -> None:
        self.items = items

    def period_items(self, starts: list[datetime]) -> Iterator[LedgerUsage]:
        yield from (item for item in self.items if item.period_start in starts)


def exporter(partners: list, usage: Usage, ledger: Ledger) -> UsageExporter:  # type: ignore[type-arg]
    return UsageExporter(
        partners=MemoryPartnerIndex(partners),
        tiers=lambda: TIERS,
        usage=usage,
        ledger=ledger,
        page_size=500,
        clock=lambda: datetime(2026, 6, 20, tzinfo=UTC),
    )


def test_on_the_first_of_a_month_a_day_export_never_counts_a_monthly_tiers_ledger_item() -> None:
    # Given a free (DAY) and a pro (MONTH) partner; June 1st is the start of both a day and the month
    free, pro = active_partner("kfree"), active_partner("kpro", tier="pro")
    first = datetime(2026, 6, 1, tzinfo=UTC)
    ledger = Ledger(
        [
            LedgerUsage("kfree", first, free.partner_id, "free", prompt_tokens=3),
            LedgerUsage("kpro", first, pro.partner_id, "pro", prompt_tokens=50),
        ]
    )

    report = exporter([free, pro], Usage({}), ledger).report(parse_period("2026-06-01"))

    # Then the day's export has the free partner only, with its own tokens
    assert [(row.partner_id, row.quota_period, row.prompt_tokens) for row in report.rows] == [
        (free.partner_id, "DAY", 3)
    ]


def test_requests_of_every_key_of_a_partner_count_and_getusage_is_read_up_to_today_only() -> None:
    pro = active_partner("knew", tier="pro")
    month = datetime(2026, 6, 1, tzinfo=UTC)
    ledger = Ledger([LedgerUsage("kold", month, pro.partner_id, "pro", prompt_tokens=1, completion_tokens=2)])
    usage = Usage({"plan-pro": {"knew": [[2, 98], [3, 95]], "kold": [[4, 96]], "kstranger": [[9, 1]]}})

    report = exporter([pro], usage, ledger).report(parse_period("2026-06"))

    [row] = report.rows
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (9, 1, 2)
    assert usage.asked == [("plan-pro", date(2026, 6, 1), date(2026, 6, 20))]
