"""What people read: rich tables on stdout, errors and progress on stderr. Every value from the API is shown as
plain Text (never parsed as rich markup: a partner's name is data). --json bypasses all of this."""

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.client import ApiError

PARTNER_COLUMNS = ("partner_id", "name", "email", "tier", "status", "api_key_id", "key_prefix", "created_at")
AUDIT_COLUMNS = ("seq", "at", "actor", "action", "outcome", "reason")


# Piped output is not cut to 80 columns: a partner id or email cut short with "..." is of no use to anyone.
PIPED_WIDTH = 200


def out_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, PIPED_WIDTH)
    return console


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(body: Any) -> None:
    """The API's JSON as it answered, for scripts (stdout, one document)."""
    print(json.dumps(body, indent=2, ensure_ascii=False))


def _cell(value: Any) -> Text:
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, dict | list):
        return Text(json.dumps(value, ensure_ascii=False))
    return Text(str(value))


def table(rows: Iterable[Mapping[str, Any]], columns: Iterable[str], title: str | None = None) -> Table:
    names = list(columns)
    grid = Table(title=title, title_justify="left")
    for name in names:
        grid.add_column(name, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(row.get(name)) for name in names))
    return grid


def fields(record: Mapping[str, Any], title: str | None = None) -> Table:
    """One record as a two-column table (name, value)."""
    grid = Table(title=title, title_justify="left", show_header=False)
    grid.add_column("field", no_wrap=True)
    grid.add_column("value", overflow="fold")
    for name, value in record.items():
        grid.add_row(Text(str(name), style="bold"), _cell(value))
    return grid


def partners(page: Mapping[str, Any]) -> Table:
    return table(page.get("partners") or [], PARTNER_COLUMNS)


def partner_detail(detail: Mapping[str, Any]) -> list[Table]:
    shown = [fields(detail.get("partner") or {}, title="partner")]
    if detail.get("standing"):
        shown.append(fields(_flatten(detail["standing"]), title="standing this period"))
    if detail.get("audit"):
        shown.append(table(detail["audit"], AUDIT_COLUMNS, title="audit trail (newest first)"))
    return shown


def action(result: Mapping[str, Any]) -> Text:
    """A change's answer in one line: the partner after it and the audit entry that records it."""
    partner = result.get("partner") or {}
    audit = result.get("audit") or {}
    line = Text()
    line.append(str(partner.get("partner_id", "?")), style="bold")
    line.append(f": {audit.get('action', 'change')} {audit.get('outcome', '')}".rstrip())
    line.append(f", now {partner.get('status', '?')} on {partner.get('tier', '?')}")
    if "seq" in audit:
        line.append(f" (audit entry {audit['seq']}", style="dim")
        line.append(", operators notified)" if audit.get("notified") else ")", style="dim")
    return line


def error(exc: ApiError) -> Text:
    line = Text(f"error: {exc.status} {exc.code}", style="bold red")
    if exc.message:
        line.append(f": {exc.message}", style="red")
    for detail in exc.details if isinstance(exc.details, list) else ([exc.details] if exc.details else []):
        line.append(f"\n  {json.dumps(detail, ensure_ascii=False) if not isinstance(detail, str) else detail}")
    retry_after = next((value for key, value in exc.headers.items() if key.lower() == "retry-after"), None)
    if retry_after:
        line.append(f"\n  retry after {retry_after} s")
    return line


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat
