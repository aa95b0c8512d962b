"""Starting, running functions on demand, and stopping the offline stack, as a person does from a shell."""

import json
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest

from offline.__main__ import main as offline_main
from tests.e2e.conftest import PROJECT_ROOT, RunningStack, free_port, http, run_offline, start_offline

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def invoke(stack: RunningStack, function: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`make invoke FUNCTION=... [EVENT=...]`, against this stack's state folder."""
    command = [sys.executable, "-m", "offline.invoke", "--function", function, "--state-dir", str(stack.state_dir)]
    return subprocess.run(  # noqa: S603 - our own module, our own arguments
        [*command, *extra], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_second_start_on_the_same_port_says_so_in_one_line(metered_stack: RunningStack, tmp_path: Path) -> None:
    # Given a running stack
    port = metered_stack.info["port"]

    # When another one is started on its port, or in its state folder on another port
    same_port = run_offline(tmp_path / "other", port)
    same_state = run_offline(metered_stack.state_dir, free_port())

    # Then each stops at once with a one-line reason and exit code 1, and the running stack is untouched
    assert same_port.returncode == 1
    assert same_port.stderr.strip() == f"offline: port {port} on 127.0.0.1 is already in use; choose another with PORT="
    assert same_state.returncode == 1
    assert "already running" in same_state.stderr
    assert len(same_state.stderr.strip().splitlines()) == 1
    assert (metered_stack.state_dir / "stack.json").exists()
    assert http("GET", metered_stack.url("/v1/models")).status == HTTPStatus.FORBIDDEN


def test_bad_parameter_overrides_stop_the_command_with_exit_code_2(tmp_path: Path) -> None:
    # Given an override the template does not allow
    # When `make local PARAMS=...` runs with it
    result = run_offline(tmp_path / "state", free_port(), "FreeQuotaLimit=lots")

    # Then it says why in one line and exits 2, leaving nothing behind
    assert (result.returncode, result.stderr) == (2, "offline: parameter FreeQuotaLimit='lots' is not a number\n")
    assert not (tmp_path / "state" / "stack.json").exists()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ("FreeQuotaPeriod=YEAR", "parameter FreeQuotaPeriod='YEAR' is not one of DAY, WEEK, MONTH"),
        ("FreeRateLimit=0", "parameter FreeRateLimit=0 is below its MinValue 1"),
        ("NoSuchParameter=1", "unknown template parameter(s): NoSuchParameter"),
        ("FreeQuotaLimit", "parameter override 'FreeQuotaLimit' is not Name=Value"),
    ],
)
def test_bad_parameter_overrides_are_refused_before_anything_starts(
    params: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given overrides the template does not allow
    # When the stack's command runs with them (in this process: nothing starts, so nothing to isolate)
    exit_code = offline_main(["--port", str(free_port()), "--state-dir", str(tmp_path), "--params", params])

    # Then it says why and exits 2 before taking the lock
    assert exit_code == 2
    assert capsys.readouterr().err.startswith(f"offline: {reason}")
    assert not (tmp_path / "offline.pid").exists()


def test_invoke_runs_a_function_of_the_running_stack(metered_stack: RunningStack, tmp_path: Path) -> None:
    # Given the running stack, a partner, and the sample API Gateway event of GET /v1/models for its key
    # (the function answers for partners only: the sample's own key id belongs to nobody here)
    signed_up = http("POST", metered_stack.url("/signup"), body={"name": "Ada", "email": "ada-invoke@example.com"})
    event = json.loads((PROJECT_ROOT / "events" / "get_models.json").read_text())
    event["requestContext"]["identity"]["apiKeyId"] = signed_up.body["api_key_id"]
    event_file = tmp_path / "get_models.json"
    event_file.write_text(json.dumps(event))

    # When the function is invoked on demand
    result = invoke(metered_stack, "ModelsFunction", "--event", str(event_file))

    # Then its result is printed as JSON and the command succeeds
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["statusCode"] == HTTPStatus.OK
    assert json.loads(answer["body"])["object"] == "list"


def test_invoke_exits_non_zero_when_the_function_fails(metered_stack: RunningStack) -> None:
    # Given no event, so the function gets {} (no HTTP method to route)
    # When it is invoked
    result = invoke(metered_stack, "ModelsFunction")

    # Then Lambda's error payload is printed and the exit code is 1
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == "KeyError"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["NoSuchFunction"], "no function 'NoSuchFunction' in the template"),
        (["ModelsFunction", "--event", "/dev/null"], "cannot read the event /dev/null"),
    ],
)
def test_invoke_says_what_is_wrong_with_its_arguments(
    metered_stack: RunningStack, arguments: list[str], reason: str
) -> None:
    # Given a function the template does not have, or an event that is not JSON
    # When it is invoked
    result = invoke(metered_stack, *arguments)

    # Then the reason is printed and the exit code is 2
    assert result.returncode == 2
    assert reason in result.stderr


def test_scheduled_functions_run_on_demand_and_the_stack_stops_cleanly(tmp_path: Path) -> None:
    # Given a stack from a template with a scheduled function
    stack = start_offline(tmp_path / "state", "", "--template", str(FIXTURES / "scheduled.yaml"))
    try:
        assert stack.info["schedules"] == [
            {"function": "EchoFunction", "event": "EveryMinute", "expression": "rate(1 minute)", "enabled": True}
        ]

        # When the scheduled function is invoked without an event
        result = invoke(stack, "EchoFunction")

        # Then it ran with the template's environment and timeout and EventBridge's scheduled event
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["prefix"] == "scheduled"
        assert answer["function_name"] == "metered-ai-local-EchoFunction"
        assert 0 < answer["remaining_ms"] <= 5000
        assert answer["event"]["detail-type"] == "Scheduled Event"
        assert answer["event"]["source"] == "aws.events"
        assert invoke(stack, "FailingFunction").returncode == 1
    finally:
        # When it is stopped the way Ctrl-C or a process manager stops it
        exit_code = stack.stop()

    # Then it exits cleanly and takes its stack.json and lock with it
    assert exit_code == 0, stack.log.read_text()
    assert not (stack.state_dir / "stack.json").exists()
    assert not (stack.state_dir / "offline.pid").exists()
