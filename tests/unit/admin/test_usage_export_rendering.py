"""The usage export's pure parts: which periods a `period` selects, and CSV a spreadsheet cannot run."""

import base64
import csv
import hashlib
import io
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from core.admin.adapters.export_bucket import ExportBucket
from core.admin.usage_export import (
    UsageReport,
    UsageRow,
    closed_periods,
    object_key,
    parse_period,
    render_csv,
    safe_cell,
)
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


def test_the_scheduled_exports_objects_are_named_by_quota_period_period_and_format() -> None:
    assert object_key("usage/", "MONTH", "2026-03", "csv") == "usage/month/2026-03.csv"
    assert object_key("usage/", "WEEK", "2026-03-02", "json") == "usage/week/2026-03-02.json"


@pytest.mark.parametrize(
    ("as_of", "closed"),
    [
        # a Wednesday: yesterday's DAY period only
        ("2026-03-04T00:45:00Z", [("2026-03-03", "DAY")]),
        # a Monday: Sunday's DAY period and the week that started the Monday before
        ("2026-03-09T00:45:00Z", [("2026-03-08", "DAY"), ("2026-03-02", "WEEK")]),
        # the 1st (a Sunday): the last day of February and February
        ("2026-03-01T00:45:00Z", [("2026-02-28", "DAY"), ("2026-02", "MONTH")]),
        # the 1st and a Monday: all three
        ("2026-06-01T23:59:00Z", [("2026-05-31", "DAY"), ("2026-05-25", "WEEK"), ("2026-05", "MONTH")]),
    ],
)
def test_a_daily_run_exports_each_quota_period_that_closed_the_day_before(
    as_of: str, closed: list[tuple[str, str]]
) -> None:
    found = closed_periods(datetime.fromisoformat(as_of))

    assert [(period.spelled, kind) for period, kind in found] == closed


def test_a_put_is_one_putobject_with_its_md5_and_sha256() -> None:
    client = boto3.client("s3", region_name="us-east-1")
    body = b'"partner_id"\r\n'
    with Stubber(client) as stubber:
        stubber.add_response(
            "put_object",
            {},
            {
                "Bucket": "exports",
                "Key": "usage/day/2026-03-03.csv",
                "Body": body,
                "ContentType": "text/csv; charset=utf-8",
                "ContentMD5": base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
                "Metadata": {"sha256": hashlib.sha256(body).hexdigest()},
            },
        )
        ExportBucket("exports", client).put("usage/day/2026-03-03.csv", body, "text/csv; charset=utf-8")
        stubber.assert_no_pending_responses()
