"""`make smoke` against `make local`: the smoke command, run as an operator runs it (a subprocess), passes on a
healthy offline stack and fails, saying which step and why, when a step is broken."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT, START_TIMEOUT_SECONDS, RunningStack, free_port, offline_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def logged_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """`make local` with its access log on (one line per request, into a file), as a developer runs it."""
    state_dir = tmp_path_factory.mktemp("smoke") / "state"
    state_dir.mkdir()
    log = state_dir.parent / "make-local.log"
    command = [part for part in offline_command(state_dir, free_port()) if part != "--quiet"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not (state_dir / "stack.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the offline stack did not start:\n{log.read_text()}")
        time.sleep(0.05)
    stack = RunningStack(process, state_dir, log, json.loads((state_dir / "stack.json").read_text()))
    yield stack
    stack.stop()


def smoke(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own module, our own arguments
        [sys.executable, "-m", "tools.smoke", "--local", str(state_dir), *extra],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_smoke_passes_against_make_local(logged_stack: RunningStack) -> None:
    # When the operator runs the smoke command against the running offline stack
    run = smoke(logged_stack.state_dir, "--access-log", str(logged_stack.log))

    # Then every step that applies offline passes, in order, and the command exits 0
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.split(" ")[0] in ("PASS", "FAIL", "SKIP")]
    assert [line.split(":")[0] for line in lines] == [
        "SKIP account's API Gateway logging role",
        "PASS signup -> 201 with a key",
        "PASS /v1/models",
        "PASS one chat completion",
        "PASS access log line carries the key id",
        "PASS signed billing events",
        "SKIP an alarm reaches the alert topic",
        "PASS throwaway partner and key deleted",
    ]
    assert "free -> pro, pro -> free" in run.stdout


def test_the_throwaway_partner_is_gone_afterwards(logged_stack: RunningStack) -> None:
    # Given a smoke run that passed
    run = smoke(logged_stack.state_dir)
    assert run.returncode == 0, run.stdout
    key_id = run.stdout.split("key id ")[1].split()[0]

    # Then its key no longer exists, and nor does its partner record
    apigateway = logged_stack.client("apigateway")
    assert key_id not in {key["id"] for key in apigateway.get_api_keys()["items"]}
    partner_id = run.stdout.split("partner ")[1].split(",")[0]
    table = logged_stack.info["tables"]["PartnersTable"]
    item = logged_stack.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"PARTNER#{partner_id}"}})
    assert "Item" not in item


def test_a_stack_without_the_webhook_secret_fails_the_billing_step(logged_stack: RunningStack, tmp_path: Path) -> None:
    # Given the same stack, as a stack without the billing webhook's signing secret describes itself
    broken = tmp_path / "broken"
    broken.mkdir()
    info = {**logged_stack.info, "webhook_secrets": {}}
    (broken / "stack.json").write_text(json.dumps(info))

    # When the smoke command runs
    run = smoke(broken)

    # Then it exits non-zero, naming the step and the reason, and still cleans up its partner
    assert run.returncode == 1
    assert "FAIL signed billing events: free -> pro -> free: the stack has no Standard Webhooks signing secret" in (
        run.stdout
    )
    assert "PASS throwaway partner and key deleted" in run.stdout
    assert "smoke test FAILED: 1 step(s)" in run.stdout


def test_a_wrong_signing_secret_shows_the_webhooks_answer(logged_stack: RunningStack, tmp_path: Path) -> None:
    # Given a stack.json whose secret is not the one the stack verifies with
    broken = tmp_path / "wrong"
    broken.mkdir()
    info = {**logged_stack.info, "webhook_secrets": {"standard": "whsec_" + "A" * 43 + "="}}
    (broken / "stack.json").write_text(json.dumps(info))

    run = smoke(broken)

    # Then the billing step fails with the webhook's own status and body
    assert run.returncode == 1
    failure = next(line for line in run.stdout.splitlines() if line.startswith("FAIL"))
    assert failure.startswith("FAIL signed billing events: free -> pro -> free: signed billing event to pro:")
    assert "expected 200, got 401" in failure


def test_no_running_stack_is_a_usage_error(tmp_path: Path) -> None:
    run = smoke(tmp_path)

    assert run.returncode == 2
    assert "start `make local` first" in run.stderr
