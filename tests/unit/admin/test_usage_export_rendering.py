"""The usage export's pure parts: which periods a `period` selects, and CSV a spreadsheet cannot run."""

import csv
import io
from datetime import UTC, datetime

import pytest

from core.admin.usage_export import UsageReport, UsageRow, object_key, parse_period, render_csv, safe_cell
from core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("value", "start", "kinds"),
    [
        ("2026-03", datetime(2026, 3, 1, tzinfo=UTC), ("MONTH",)),
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC), ("DAY", "WEEK")),  # a Monday
        ("2026-03-04", datetime(2026, 3, 4, tzinfo=UTC), ("DAY",)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), ("DAY",)),
    ],
)
def test_a_period_selects_the_tiers_whose_quota_period_it_is(value: str, start: datetime, kinds: tuple[str]) -> None:
    period = parse_period(value)

    assert (period.start, period.kinds) == (start, kinds)


@pytest.mark.parametrize("value", ["2026-3", "2026-00", "2026-13", "2025-02-29", "2026-03-1", "26-03", "2026-W10", ""])
def test_anything_else_is_invalid(value: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_period(value)


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Acme", "Acme"),
        (42, "42"),
        ("a=b", "a=b"),
    ],
)
def test_cells_a_spreadsheet_would_run_start_with_a_quote(cell: object, safe: str) -> None:
    assert safe_cell(cell) == safe


def row(partner_id: str, name: str, by_model: dict[str, dict[str, int]]) -> UsageRow:
    return UsageRow(
        partner_id=partner_id,
        name=name,
        email="a@b.example",
        tier="free",
        quota_period="DAY",
        period_start="2026-03-02T00:00:00Z",
        period_end="2026-03-03T00:00:00Z",
        requests=3,
        tokens_by_model=by_model,
    )


def test_the_csv_has_two_columns_per_model_every_cell_quoted_and_round_trips() -> None:
    report = UsageReport(
        period="2026-03-02",
        quota_periods=["DAY"],
        rows=[
            row("p_1", 'Quote " and, comma\nnewline', {"b.model:1": {"prompt_tokens": 2, "completion_tokens": 1}}),
            row("p_2", "-2 Ltd", {"a-model": {"prompt_tokens": 5, "completion_tokens": 0}}),
        ],
    )

    text = render_csv(report)
    table = list(csv.DictReader(io.StringIO(text, newline="")))

    assert text.startswith('"partner_id","name",')
    assert list(table[0])[-4:] == [
        "prompt_tokens@a-model",
        "completion_tokens@a-model",
        "prompt_tokens@b.model:1",
        "completion_tokens@b.model:1",
    ]
    assert table[0]["name"] == 'Quote " and, comma\nnewline'
    assert (table[0]["prompt_tokens@b.model:1"], table[0]["prompt_tokens@a-model"]) == ("2", "0")
    assert table[1]["name"] == "'-2 Ltd"


def test_the_scheduled_exports_objects_are_named_by_period_and_format() -> None:
    assert object_key("usage/", "2026-03", "csv") == "usage/2026-03.csv"
