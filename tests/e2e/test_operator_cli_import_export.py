"""The `metered-ai` CLI's import and export against the offline stack (a subprocess, SigV4 with stack.json's
credentials): an import with good and bad rows exits 6 (partial) and the good keys work; the export is the
route's CSV; no key value is in anything printed or in any log line of the stack."""

import csv
import io
import json
import secrets
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import pytest

from cli.exit_codes import ExitCode
from tests.e2e.conftest import RunningStack, http
from tests.e2e.test_operator_cli import local, stack_logs

pytestmark = pytest.mark.e2e


def test_the_cli_imports_keys_and_exports_usage(metered_stack: RunningStack, tmp_path: Path) -> None:
    # Given a CSV with a good row and a bad one
    good = "cli" + secrets.token_urlsafe(24)
    tag = secrets.token_hex(4)
    path = tmp_path / "keys.csv"
    path.write_text(
        "key,name,description,enabled,usageplanIds,email,tier\n"
        f"{good},CLI Imported,,true,,cli-{tag}@import.example,pro\n"
        f"short,CLI Bad,,,,cli-bad-{tag}@import.example,free\n"
    )

    # When an operator imports it with the CLI, then exports today's usage as CSV
    imported = local(metered_stack, "--json", "keys", "import", str(path))
    used = http("GET", metered_stack.url("/v1/models"), {"Authorization": f"Bearer {good}"})
    exported = local(metered_stack, "usage", "export", "--period", datetime.now(UTC).date().isoformat())

    # Then the import reports the good row imported and the bad one refused (exit code: partial)
    assert imported.returncode == ExitCode.PARTIAL, imported.stderr
    assert f"cli-{tag}@import.example" in imported.stdout and "invalid_key" in imported.stdout
    # And the imported key works at once; the export lists its partner
    assert used.status == HTTPStatus.OK, used
    assert exported.returncode == ExitCode.OK, exported.stderr
    emails = [row["email"] for row in csv.DictReader(io.StringIO(exported.stdout))]
    assert f"cli-{tag}@import.example" in emails
    # And the key value is nowhere: not printed, not in the stack's logs
    assert good not in imported.stdout + imported.stderr + exported.stdout + exported.stderr
    assert good not in stack_logs(metered_stack)


def test_the_cli_imports_in_batches_with_rows_numbered_as_in_the_file(
    metered_stack: RunningStack, tmp_path: Path
) -> None:
    # Given 5 rows whose 4th has a key value too short
    tag = secrets.token_hex(4)
    values = ["cli" + secrets.token_urlsafe(24) for _ in range(5)]
    values[3] = "short"
    lines = [f"{value},Batch {i},,true,,batch-{i}-{tag}@import.example,free" for i, value in enumerate(values, 1)]
    path = tmp_path / "keys.csv"
    path.write_text("key,name,description,enabled,usageplanIds,email,tier\n" + "\n".join(lines) + "\n")

    # When an operator imports it two rows per request, with a reason
    done = local(metered_stack, "--json", "keys", "import", str(path), "--batch-size", "2", "--reason", "migration 7")

    # Then rows are numbered as in the file across the three batches; the short key's row is refused
    assert done.returncode == ExitCode.PARTIAL, done.stderr
    report = json.loads(done.stdout)
    assert [row["row"] for row in report["imported"]] == [1, 2, 3, 5]
    assert [(row["row"], row["code"]) for row in report["rejected"]] == [(4, "invalid_key")]
    # And each imported key works on its tier; the audit entry carries the reason; no value printed or logged
    for value in (values[0], values[4]):
        assert http("GET", metered_stack.url("/v1/models"), {"Authorization": f"Bearer {value}"}).status == 200
    shown = json.loads(local(metered_stack, "--json", "partners", "show", report["imported"][0]["partner_id"]).stdout)
    assert (shown["audit"][0]["action"], shown["audit"][0]["reason"]) == ("import", "migration 7")
    logged = done.stdout + done.stderr + stack_logs(metered_stack)
    assert not any(value in logged for value in values if value != "short")
