"""`metered-ai`, the installed console script, run as a subprocess against the offline stack (`--state-dir`: its
stack.json, as `--local` reads `make local`'s): it lists, shows and changes partners over real HTTP with requests
botocore signed, its exit codes hold, and no key value reaches a log line (its stderr, the stack's logs)."""

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import pytest

from cli.exit_codes import ExitCode
from tests.e2e.conftest import PROJECT_ROOT, RunningStack, http
from tests.e2e.test_admin_console import models, sign_up
from tests.e2e.test_usage_export_offline import chat, get_usage

pytestmark = pytest.mark.e2e

CLI = Path(sys.prefix) / "bin" / "metered-ai"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The console script `make install` put in .venv, with no AWS settings of this machine's."""
    assert CLI.exists(), f"{CLI} is missing: run `make install`"
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.pop("METERED_AI_OFFLINE_STATE_DIR", None)
    environment.update(env or {})
    return subprocess.run(  # noqa: S603 - our own console script
        [str(CLI), *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def local(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--state-dir", str(stack.state_dir), *args)


def stack_logs(stack: RunningStack) -> str:
    """What the offline stack logged: its console output and its functions' log lines."""
    logs = [stack.log, stack.state_dir / "functions.log"]
    return "".join(path.read_text(errors="replace") for path in logs if path.exists())


def test_the_cli_lists_shows_and_changes_a_partner(metered_stack: RunningStack) -> None:
    # Given a partner that signed up over HTTP
    partner = sign_up(metered_stack, "pro")
    partner_id = partner["partner_id"]

    # When an operator lists it by email (JSON for a script, a table for people) and shows it
    listed = local(metered_stack, "--json", "partners", "list", "--email", partner["email"])
    table = local(metered_stack, "partners", "list", "--email", partner["email"])
    shown = local(metered_stack, "partners", "show", partner_id)

    # Then the API's answers came back, signed requests let in
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert [found["partner_id"] for found in json.loads(listed.stdout)["partners"]] == [partner_id]
    assert table.returncode == ExitCode.OK, table.stderr
    assert partner_id in table.stdout
    assert partner["api_key"][:4] in table.stdout
    assert shown.returncode == ExitCode.OK, shown.stderr
    assert partner_id in shown.stdout

    # When it is suspended, resumed and its key revoked, each with a reason
    suspended = local(metered_stack, "--json", "partners", "suspend", partner_id, "--reason", "CLI test: suspend")
    resumed = local(metered_stack, "--json", "partners", "resume", partner_id, "--reason", "CLI test: resume")
    revoked = local(metered_stack, "keys", "revoke", partner_id, "--reason", "CLI test: revoke")

    # Then each answered with the partner after it, audited under the offline operator
    assert suspended.returncode == ExitCode.OK, suspended.stderr
    assert json.loads(suspended.stdout)["partner"]["status"] == "SUSPENDED"
    assert json.loads(suspended.stdout)["audit"]["actor"].endswith(":user/offline-operator")
    assert json.loads(resumed.stdout)["partner"]["status"] == "ACTIVE"
    assert revoked.returncode == ExitCode.OK, revoked.stderr
    assert f"{partner_id}: revoke applied, now REVOKED" in revoked.stdout

    # And no key value is in anything the CLI printed, nor in the stack's logs
    everything = "".join(done.stdout + done.stderr for done in (listed, table, shown, suspended, resumed, revoked))
    assert partner["api_key"] not in everything
    assert partner["api_key"] not in stack_logs(metered_stack)


def test_the_cli_exports_usage_to_a_file_and_to_stdout(metered_stack: RunningStack, tmp_path: Path) -> None:
    # Given a pro partner (DAY quota here) that made two chat completions
    partner = sign_up(metered_stack, "pro")
    for words in (2, 3):
        chat(metered_stack, partner["api_key"], words)
    today = datetime.now(UTC).date().isoformat()
    output = tmp_path / f"usage-{today}.csv"

    # When an operator exports today's usage as CSV to a file, and as JSON to stdout
    to_file = local(metered_stack, "usage", "export", "--period", today, "--format", "csv", "--output", str(output))
    to_stdout = local(metered_stack, "usage", "export", "--period", today, "--format", "json")

    # Then the file has the partner's row with GetUsage's requests, the progress bar went to stderr
    assert to_file.returncode == ExitCode.OK, to_file.stderr
    assert f"usage {today}.csv" in to_file.stderr
    assert to_file.stdout == ""
    [row] = [
        row for row in csv.DictReader(io.StringIO(output.read_text())) if row["partner_id"] == partner["partner_id"]
    ]
    assert row["requests"] == str(get_usage(metered_stack, partner["api_key_id"])) == "2"
    # And stdout carried the JSON export as the API answered it
    assert to_stdout.returncode == ExitCode.OK, to_stdout.stderr
    rows = [row for row in json.loads(to_stdout.stdout)["rows"] if row["partner_id"] == partner["partner_id"]]
    assert [row["requests"] for row in rows] == [2]
    # And no key value anywhere: the CLI's output, the export, the stack's logs
    assert partner["api_key"] not in to_file.stderr + to_stdout.stdout + to_stdout.stderr + output.read_text()
    assert partner["api_key"] not in stack_logs(metered_stack)


def test_a_bad_period_is_refused_by_the_api(metered_stack: RunningStack) -> None:
    done = local(metered_stack, "usage", "export", "--period", "2026-3")
    assert done.returncode == ExitCode.REFUSED
    assert "400 invalid_request" in done.stderr


def test_the_cli_follows_every_page(metered_stack: RunningStack) -> None:
    for _ in range(3):
        sign_up(metered_stack)
    done = local(metered_stack, "--json", "partners", "list", "--limit", "2", "--all")
    assert done.returncode == ExitCode.OK, done.stderr
    page = json.loads(done.stdout)
    ids = [partner["partner_id"] for partner in page["partners"]]
    assert len(ids) == len(set(ids)) >= 3
    assert page["next"] is None


@pytest.mark.parametrize(
    ("args", "exit_code", "shown"),
    [
        (["partners", "show", "p_0123456789abcdef0123456789abcdef"], ExitCode.NOT_FOUND, "404 partner_not_found"),
        (["partners", "list", "--status", "NOT_A_STATUS"], ExitCode.REFUSED, "400 invalid_request"),
        (["partners", "suspend", "p_0123456789abcdef0123456789abcdef"], ExitCode.USAGE, "--reason"),
    ],
)
def test_the_cli_exit_codes_on_the_offline_stack(
    metered_stack: RunningStack, args: list[str], exit_code: int, shown: str
) -> None:
    done = local(metered_stack, *args)
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert shown in done.stderr


def test_a_wrong_secret_is_not_authorized_with_api_gateways_words(metered_stack: RunningStack) -> None:
    # Given the stack's URL and its access key with a wrong secret, from the environment (botocore's chain)
    accepted = metered_stack.info["aws_credentials"]
    env = {"AWS_ACCESS_KEY_ID": accepted["access_key_id"], "AWS_SECRET_ACCESS_KEY": "x" * 40}
    done = run_cli(
        "--api-url",
        metered_stack.info["api_url"],
        "--region",
        metered_stack.info["region"],
        "partners",
        "list",
        env=env,
    )
    assert done.returncode == ExitCode.NOT_AUTHORIZED
    assert "403 InvalidSignatureException" in done.stderr


def test_without_a_running_stack_the_cli_says_so(tmp_path: Path) -> None:
    done = run_cli("--state-dir", str(tmp_path), "partners", "list")
    assert done.returncode == ExitCode.USAGE
    assert "is `make local` running" in done.stderr


def test_the_cli_is_the_installed_console_script() -> None:
    done = run_cli("--help")
    assert done.returncode == ExitCode.OK
    for command in ("partners", "keys", "usage"):
        assert command in done.stdout


def test_the_cli_moves_a_partner_to_another_tier(metered_stack: RunningStack) -> None:
    # Given a free partner
    partner = sign_up(metered_stack)

    # When an operator moves it to pro, then names a tier the stack does not have
    moved = local(metered_stack, "--json", "partners", "set-tier", partner["partner_id"], "pro", "--reason", "deal 42")
    unknown = local(metered_stack, "partners", "set-tier", partner["partner_id"], "platinum", "--reason", "typo")

    # Then the first answered with the partner on pro, its key still working; the second was refused, 400
    assert moved.returncode == ExitCode.OK, moved.stderr
    assert json.loads(moved.stdout)["partner"]["tier"] == "pro"
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK
    assert unknown.returncode == ExitCode.REFUSED
    assert "400 unknown_tier" in unknown.stderr


def new_key_from(done: subprocess.CompletedProcess[str]) -> str:
    """The key `keys rotate` printed: the line after its announcement, on stdout."""
    lines = done.stdout.splitlines()
    return lines[lines.index("new API key (shown once, store it now):") + 1]


def test_the_cli_rotates_a_key_and_prints_it_once_on_stdout_only(metered_stack: RunningStack) -> None:
    # Given a pro partner whose key works
    partner = sign_up(metered_stack, "pro")
    partner_id = partner["partner_id"]
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.OK

    # When an operator rotates it with no grace
    rotated = local(metered_stack, "keys", "rotate", partner_id, "--reason", "CLI test: rotate")

    # Then the new key is on stdout once, and works; the old one is refused at once
    assert rotated.returncode == ExitCode.OK, rotated.stderr
    new_key = new_key_from(rotated)
    assert rotated.stdout.count(new_key) == 1
    assert f"{partner_id}: " in rotated.stdout
    assert models(metered_stack, new_key) == HTTPStatus.OK
    assert models(metered_stack, partner["api_key"]) == HTTPStatus.FORBIDDEN

    # When its key is revoked and re-issued, for a script (--json)
    revoked = local(metered_stack, "keys", "revoke", partner_id, "--reason", "CLI test: revoke")
    reissued = local(metered_stack, "--json", "keys", "rotate", partner_id, "--reason", "CLI test: re-issue")

    # Then the answer is the API's JSON with the new key once
    assert revoked.returncode == ExitCode.OK, revoked.stderr
    assert reissued.returncode == ExitCode.OK, reissued.stderr
    answer = json.loads(reissued.stdout)
    assert reissued.stdout.count(answer["api_key"]) == 1
    assert models(metered_stack, answer["api_key"]) == HTTPStatus.OK

    # And no key value is in any log line: the CLI's stderr, the stack's console and its functions' logs
    logs = rotated.stderr + revoked.stderr + reissued.stderr + stack_logs(metered_stack)
    for key in (partner["api_key"], new_key, answer["api_key"]):
        assert key not in logs


def test_the_cli_grants_a_usage_extension_and_refuses_one_for_a_suspended_partner(metered_stack: RunningStack) -> None:
    # Given two pro partners, the second suspended
    active, held = sign_up(metered_stack, "pro"), sign_up(metered_stack, "pro")
    suspended = local(metered_stack, "partners", "suspend", held["partner_id"], "--reason", "CLI test: hold")
    assert suspended.returncode == ExitCode.OK, suspended.stderr

    # When an operator grants each 3 requests and 1000 tokens for this period
    grant = ("--requests", "3", "--tokens", "1000", "--reason", "launch")
    granted = local(metered_stack, "usage", "grant", active["partner_id"], *grant)
    refused = local(metered_stack, "usage", "grant", held["partner_id"], *grant)

    # Then the active partner's extension is applied, audited and shown by /v1/usage at once
    assert granted.returncode == ExitCode.OK, granted.stderr
    assert f"{active['partner_id']}: extension applied, now ACTIVE on pro" in granted.stdout
    shown = json.loads(local(metered_stack, "--json", "partners", "show", active["partner_id"]).stdout)
    assert shown["audit"][0]["action"] == "extension"
    usage = http("GET", metered_stack.url("/v1/usage"), {"Authorization": f"Bearer {active['api_key']}"})
    assert (usage.body["requests"]["extension"], usage.body["tokens"]["extension"]) == (3, 1000), usage
    # And the suspended partner's is refused with the API's 409 (exit code 1), nothing granted
    assert refused.returncode == ExitCode.REFUSED
    assert "409 partner_not_active" in refused.stderr
    usage = http("GET", metered_stack.url("/v1/usage"), {"Authorization": f"Bearer {held['api_key']}"})
    assert usage.status == HTTPStatus.FORBIDDEN  # its key is disabled: API Gateway refuses it
