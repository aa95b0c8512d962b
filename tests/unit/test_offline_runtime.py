"""Functions run in-process: their environment, Lambda's context and error payloads, and the state folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from offline.functions import FunctionRuntime, FunctionSpec, LocalLambdaContext
from offline.state import AlreadyRunning, StackNotRunning, StateDir, read_stack
from offline.template import PROJECT_ROOT


def spec(name: str, handler: str, environment: dict[str, str] | None = None, timeout: int = 3) -> FunctionSpec:
    return FunctionSpec(
        name,
        f"stack-{name}",
        f"tests.offline_functions.{handler}",
        PROJECT_ROOT,
        timeout,
        256,
        "us-east-1",
        environment or {},
    )


def test_variables_functions_disagree_on_are_swapped_in_per_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two functions that agree on one variable and disagree on another
    monkeypatch.delenv("SHARED", raising=False)
    monkeypatch.delenv("LEVEL", raising=False)
    runtime = FunctionRuntime(
        {
            "A": spec("A", "read_environment", {"SHARED": "same", "LEVEL": "DEBUG"}),
            "B": spec("B", "read_environment", {"SHARED": "same", "LEVEL": "INFO"}),
        },
        {},
    )
    runtime.load()

    # Then the shared one is set once for all, and the other only while its function runs
    assert runtime.shared_environment == {"SHARED": "same"}
    level = {"name": "LEVEL"}
    assert (runtime.invoke("A", level).payload, runtime.invoke("B", level).payload) == ("DEBUG", "INFO")
    assert "LEVEL" not in os.environ


def test_the_context_counts_down_from_the_template_timeout() -> None:
    context = LocalLambdaContext(spec("A", "echo", timeout=20), "req-1")
    assert (context.function_name, context.memory_limit_in_mb, context.aws_request_id) == ("stack-A", 256, "req-1")
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:stack-A"
    assert 19_000 < context.get_remaining_time_in_millis() <= 20_000


def test_a_raising_handler_gives_lambda_s_error_payload() -> None:
    runtime = FunctionRuntime({"Fail": spec("Fail", "fail")}, {})
    runtime.load()
    result = runtime.invoke("Fail", {})
    assert not result.ok
    assert result.error is not None
    assert (result.error["errorType"], result.error["errorMessage"]) == ("RuntimeError", "the function failed")
    # The trace starts in the handler, as Lambda's does
    assert "offline/functions.py" not in "".join(result.error["stackTrace"])


def test_a_bad_handler_string_fails_the_start() -> None:
    runtime = FunctionRuntime({"Nope": spec("Nope", "no_such_function")}, {})
    with pytest.raises(ValueError, match="has no function no_such_function"):
        runtime.load()


def test_the_state_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    # Given a lock left by a process that is gone
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    finished = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603 - our own command
    state.pid_file.write_text(finished.stdout.strip())

    # When this process claims it, it takes it over
    state.claim()
    assert state.pid_file.read_text() == str(os.getpid())

    # And a live holder is refused with a message naming it
    state.pid_file.write_text(str(os.getppid()))
    with pytest.raises(AlreadyRunning, match=f"pid {os.getppid()}"):
        state.claim()


def test_reading_the_stack_of_a_stack_that_is_not_running_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(StackNotRunning, match="make local"):
        read_stack(tmp_path)
