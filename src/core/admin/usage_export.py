"""The usage export for billing (GET /admin/usage and the scheduled export to S3): one row per partner and
quota period with the requests API Gateway counted (GetUsage over each tier's plan, page by page as the quota
monitor reads it), the extensions operators granted and the tokens by model from the AI API's ledger.

Which periods (docs/decisions.md, "Usage export"): `YYYY-MM` is the month of the MONTH tiers; `YYYY-MM-DD` is
that day of the DAY tiers and, when the date is a Monday, the ISO week it starts of the WEEK tiers. A partner
has a row when its tier is of such a period now, or when one of its keys has requests or tokens in it on such a
tier (a partner who moved tier mid-period). Tokens are the partner's keys' own counters (a rotated key's
`carried_tokens` are never added: they were counted on the old key already), matched by the ledger items'
`partner_id`.
"""

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.adapters.metering_items import model_tokens_attribute, model_tokens_of
from core.admin.models import LedgerUsage, PartnerFilter
from core.admin.ports import LedgerItems, PartnerIndex, PlanUsageReader
from core.errors import ExportTooLarge, InvalidRequest
from core.models import Partner, Tier
from core.observability import logger
from core.periods import QuotaPeriod, period_bounds, period_key

ExportFormat = Literal["csv", "json"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "json")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

# The answer of GET /admin/usage stays below Lambda's 6 MB response payload (API Gateway allows 10 MB): beyond
# this the answer is 413 export_too_large, pointing to the scheduled export's object in S3.
MAX_ANSWER_BYTES = 5_000_000
# Partners read per Scan page while exporting.
PARTNER_PAGE = 500
# Cells a spreadsheet would run as a formula (OWASP, "CSV Injection"): prefixed with a single quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")

BASE_COLUMNS = (
    "partner_id",
    "name",
    "email",
    "tier",
    "quota_period",
    "period_start",
    "period_end",
    "requests",
    "extension_requests",
    "extension_tokens",
    "prompt_tokens",
    "completion_tokens",
)


@dataclass(frozen=True)
class ExportPeriod:
    """The period an export covers, as asked (`2026-03` or `2026-03-02`), and the quota periods it selects."""

    spelled: str
    start: datetime
    kinds: tuple[QuotaPeriod, ...]

    def bounds(self, kind: QuotaPeriod) -> tuple[datetime, datetime]:
        return period_bounds(kind, self.start)


def parse_period(value: str) -> ExportPeriod:
    """`YYYY-MM` (MONTH tiers) or `YYYY-MM-DD` (DAY tiers; WEEK tiers too when it is a Monday); 400 otherwise."""
    try:
        if (month := _MONTH.fullmatch(value)) is not None:
            start = datetime(int(month[1]), int(month[2]), 1, tzinfo=UTC)
            return ExportPeriod(value, start, ("MONTH",))
        if (day := _DAY.fullmatch(value)) is not None:
            start = datetime(int(day[1]), int(day[2]), int(day[3]), tzinfo=UTC)
            return ExportPeriod(value, start, ("DAY", "WEEK") if start.weekday() == 0 else ("DAY",))
    except ValueError:
        pass
    raise InvalidRequest(
        "period must be a month (YYYY-MM, MONTH tiers) or a day (YYYY-MM-DD, DAY tiers; a Monday also selects the "
        "WEEK tiers' week it starts)",
        [{"field": "period", "message": "not a valid YYYY-MM or YYYY-MM-DD"}],
    )


class UsageRow(BaseModel):
    """One partner's usage in one quota period."""

    model_config = ConfigDict(frozen=True)

    partner_id: str
    name: str
    email: str
    tier: str
    quota_period: QuotaPeriod
    period_start: str
    period_end: str
    requests: int = 0
    extension_requests: int = 0
    extension_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_by_model: dict[str, dict[str, int]] = Field(default_factory=dict)


class UsageReport(BaseModel):
    """GET /admin/usage?format=json, and the scheduled export's JSON object."""

    period: str
    quota_periods: list[QuotaPeriod]
    rows: list[UsageRow]


@dataclass
class _Tally:
    requests: int = 0
    extension_requests: int = 0
    extension_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_ledger(self, item: LedgerUsage) -> None:
        self.extension_requests += item.extension_requests
        self.extension_tokens += item.extension_tokens
        self.prompt_tokens += item.prompt_tokens
        self.completion_tokens += item.completion_tokens
        for model, counters in item.tokens_by_model.items():
            mine = self.by_model.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
            for name, value in counters.items():
                mine[name] = mine.get(name, 0) + value


class UsageExporter:
    """Builds the export from the partners table, GetUsage and the metering table's ledger items."""

    def __init__(
        self,
        *,
        partners: PartnerIndex,
        tiers: Callable[[], dict[str, Tier]],
        usage: PlanUsageReader,
        ledger: LedgerItems,
        page_size: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._partners = partners
        self._tiers = tiers
        self._usage = usage
        self._ledger = ledger
        self._page_size = page_size
        self._clock = clock

    def report(self, period: ExportPeriod) -> UsageReport:
        today = self._clock().date()
        if period.start.date() > today:
            raise InvalidRequest(
                f"period {period.spelled} has not started yet", [{"field": "period", "message": "in the future"}]
            )
        tiers = {name: tier for name, tier in self._tiers().items() if tier.limits.quota_period in period.kinds}
        partners = {partner.partner_id: partner for partner in self._all_partners()}
        by_key = {partner.api_key_id: partner.partner_id for partner in partners.values() if partner.api_key_id}
        tallies: dict[tuple[str, QuotaPeriod], _Tally] = {}
        for partner in partners.values():
            if partner.tier in tiers:
                tallies[(partner.partner_id, _kind(tiers[partner.tier]))] = _Tally()
        # The ledger first: it names the partner of keys the partners table no longer points at (rotated).
        starts = {period_key(period.bounds(kind)[0]): kind for kind in period.kinds}
        ledger_kinds = {name: _kind(tier) for name, tier in tiers.items()}
        for item in self._ledger.period_items([period.bounds(kind)[0] for kind in period.kinds]):
            kind = ledger_kinds.get(item.tier or "") or starts.get(period_key(item.period_start))
            if kind is None or item.partner_id not in partners:
                continue
            by_key.setdefault(item.api_key_id, item.partner_id)
            tallies.setdefault((item.partner_id, kind), _Tally()).add_ledger(item)
        unattributed = 0
        for _, tier in sorted(tiers.items()):
            kind = _kind(tier)
            start, reset = period.bounds(kind)
            last_day = min((reset - timedelta(days=1)).date(), today)
            for page in self._usage.usage_pages(tier.plan_id, start.date(), last_day, self._page_size):
                for key_id, days in page.items():
                    used = sum(int(day[0]) for day in days)
                    owner = by_key.get(key_id)
                    if owner is None:
                        unattributed += used
                        continue
                    tallies.setdefault((owner, kind), _Tally()).requests += used
        if unattributed:
            logger.warning(
                "usage export: requests of keys no partner owns", period=period.spelled, requests=unattributed
            )
        rows = [_row(partners[partner_id], kind, period, tally) for (partner_id, kind), tally in tallies.items()]
        rows.sort(key=lambda row: (row.period_start, row.quota_period, row.partner_id))
        return UsageReport(period=period.spelled, quota_periods=list(period.kinds), rows=rows)

    def answer(self, period: ExportPeriod, fmt: ExportFormat, where: str) -> str:
        """The export as GET /admin/usage answers it; ExportTooLarge (413) beyond MAX_ANSWER_BYTES, naming
        `where` the scheduled export keeps it."""
        body = render(self.report(period), fmt)
        size = len(body.encode())
        if size > MAX_ANSWER_BYTES:
            raise ExportTooLarge(size, MAX_ANSWER_BYTES, where)
        return body

    def _all_partners(self) -> Iterator[Partner]:
        after: str | None = None
        while True:
            found, after = self._partners.page(PartnerFilter(), PARTNER_PAGE, after)
            yield from found
            if after is None:
                return


def _kind(tier: Tier) -> QuotaPeriod:
    assert tier.limits.quota_period is not None  # only tiers with a quota period are selected
    return tier.limits.quota_period


def _row(partner: Partner, kind: QuotaPeriod, period: ExportPeriod, tally: _Tally) -> UsageRow:
    start, reset = period.bounds(kind)
    return UsageRow(
        partner_id=partner.partner_id,
        name=partner.name,
        email=partner.email,
        tier=partner.tier,
        quota_period=kind,
        period_start=period_key(start),
        period_end=period_key(reset),
        requests=tally.requests,
        extension_requests=tally.extension_requests,
        extension_tokens=tally.extension_tokens,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        tokens_by_model=dict(sorted(tally.by_model.items())),
    )


# --- Rendering ----------------------------------------------------------------------------------------------


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ or a tab/CR/LF gets a leading single
    quote (OWASP, "CSV Injection"); quoting and embedded quotes are the csv module's."""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def model_columns(rows: Iterable[UsageRow]) -> list[str]:
    """`prompt_tokens@<model>`, `completion_tokens@<model>` for every model in the export, models sorted."""
    models = sorted({model for row in rows for model in row.tokens_by_model})
    return [model_tokens_attribute(kind, model) for model in models for kind in ("prompt", "completion")]


def render_csv(report: UsageReport) -> str:
    """RFC 4180 CSV (every cell quoted, CRLF), UTF-8: the base columns then two per model."""
    by_model = model_columns(report.rows)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([safe_cell(column) for column in (*BASE_COLUMNS, *by_model)])
    for row in report.rows:
        plain = row.model_dump()
        cells = [plain[column] for column in BASE_COLUMNS]
        for column in by_model:
            kind, model = model_tokens_of(column) or ("prompt", "")
            cells.append(row.tokens_by_model.get(model, {}).get(f"{kind}_tokens", 0))
        writer.writerow([safe_cell(cell) for cell in cells])
    return out.getvalue()


def render_json(report: UsageReport) -> str:
    return json.dumps(report.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def render(report: UsageReport, fmt: ExportFormat) -> str:
    return render_csv(report) if fmt == "csv" else render_json(report)


def object_key(prefix: str, period: str, fmt: ExportFormat) -> str:
    """Where the scheduled export keeps a period's file: `<prefix><period>.<format>`, e.g. `usage/2026-03.csv`."""
    return f"{prefix}{period}.{fmt}"
