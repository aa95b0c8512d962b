"""Functions run as Lambda runs them: one worker process per execution environment, each serving one
invocation at a time with the function's own environment, killed at the timeout; and the state folder."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offline.functions import FunctionRuntime, FunctionSpec, InvocationResult, function_specs
from offline.state import AlreadyRunning, StackNotRunning, StateDir, read_stack
from offline.template import PROJECT_ROOT, load_template
from offline.worker import LambdaContext


def spec(
    name: str,
    handler: str,
    environment: dict[str, str] | None = None,
    timeout: int = 3,
    reserved_concurrency: int | None = None,
) -> FunctionSpec:
    return FunctionSpec(
        name,
        f"stack-{name}",
        f"tests.offline_functions.{handler}",
        PROJECT_ROOT,
        timeout,
        256,
        "us-east-1",
        environment or {},
        reserved_concurrency=reserved_concurrency,
    )


@pytest.fixture
def runtimes() -> Iterator[list[FunctionRuntime]]:
    """Runtimes a test starts; their workers are stopped after it."""
    started: list[FunctionRuntime] = []
    yield started
    for runtime in started:
        runtime.close()


def start(runtimes: list[FunctionRuntime], *specs: FunctionSpec, max_concurrency: int = 8) -> FunctionRuntime:
    runtime = FunctionRuntime({item.logical_id: item for item in specs}, {}, max_concurrency=max_concurrency)
    runtime.load()
    runtimes.append(runtime)
    return runtime


def burst(runtime: FunctionRuntime, name: str, events: list[dict[str, Any]]) -> list[InvocationResult]:
    """All events at once, one thread each, as concurrent callers send them."""
    results: list[InvocationResult | None] = [None] * len(events)
    ready = threading.Barrier(len(events))

    def call(index: int) -> None:
        ready.wait()
        results[index] = runtime.invoke(name, events[index])

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def most_at_once(results: list[InvocationResult]) -> int:
    """The largest number of invocations whose handlers ran at the same moment."""
    moments = sorted(
        [(result.payload["started"], 1) for result in results] + [(result.payload["ended"], -1) for result in results],
        key=lambda moment: (moment[0], moment[1]),
    )
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def test_concurrent_invocations_of_one_function_never_see_each_other_s_module_state(
    runtimes: list[FunctionRuntime],
) -> None:
    # Given a function that keeps its caller in module state while it works
    runtime = start(runtimes, spec("Remember", "remember"), max_concurrency=4)

    # When twelve callers invoke it at once
    results = burst(runtime, "Remember", [{"caller": f"caller-{n}", "hold_seconds": 0.2} for n in range(12)])

    # Then each got its own answer: no invocation saw another's state, as in Lambda's execution environments
    assert all(result.ok for result in results), [result.error for result in results]
    assert [result.payload["module_caller"] for result in results] == [f"caller-{n}" for n in range(12)]
    assert len({result.payload["request_id"] for result in results}) == 12
    # And the work was spread over separate processes, never this one
    pids = {result.payload["pid"] for result in results}
    assert 1 < len(pids) <= 4
    assert os.getpid() not in pids


def test_each_function_sees_its_own_environment_and_nothing_of_this_process(
    runtimes: list[FunctionRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two functions that disagree on a variable, and a variable only this process has
    monkeypatch.setenv("ONLY_IN_THE_PARENT", "secret")
    runtime = start(
        runtimes,
        spec("A", "read_environment", {"SHARED": "same", "LEVEL": "DEBUG"}),
        spec("B", "read_environment", {"SHARED": "same", "LEVEL": "INFO"}),
    )

    # When both read them, at the same time
    levels = burst(runtime, "A", [{"name": "LEVEL"}] * 3) + burst(runtime, "B", [{"name": "LEVEL"}] * 3)

    # Then each sees the template's value for it, and nothing of the process that started it
    assert [result.payload for result in levels] == ["DEBUG"] * 3 + ["INFO"] * 3
    assert runtime.invoke("A", {"name": "SHARED"}).payload == "same"
    assert runtime.invoke("A", {"name": "ONLY_IN_THE_PARENT"}).payload is None
    assert runtime.invoke("A", {"name": "AWS_LAMBDA_FUNCTION_NAME"}).payload == "stack-A"
    assert "LEVEL" not in os.environ


def test_a_function_past_its_timeout_is_stopped_at_the_timeout_and_the_next_invocation_works(
    runtimes: list[FunctionRuntime],
) -> None:
    # Given a function with a 1 s timeout, warm
    runtime = start(runtimes, spec("Sleep", "sleep", timeout=1))
    first = runtime.invoke("Sleep", {"seconds": 0})
    assert first.ok

    # When an invocation sleeps for 10 s
    began = time.monotonic()
    result = runtime.invoke("Sleep", {"seconds": 10})
    waited = time.monotonic() - began

    # Then the caller gets Lambda's timeout error at the timeout, not after the sleep
    assert result.error is not None
    assert (result.error["errorType"], result.error["errorMessage"]) == (
        "Sandbox.Timedout",
        "Task timed out after 1.00 seconds",
    )
    assert 1.0 <= waited < 3.0
    # And the environment that timed out is gone; the next invocation gets a new one that works
    assert first.worker_pid is not None
    assert not _alive(first.worker_pid)
    after = runtime.invoke("Sleep", {"seconds": 0})
    assert after.ok
    assert after.worker_pid != first.worker_pid


def test_a_reserved_concurrency_of_one_never_runs_two_invocations_at_once(runtimes: list[FunctionRuntime]) -> None:
    # Given a function with ReservedConcurrentExecutions: 1
    runtime = start(runtimes, spec("Remember", "remember", reserved_concurrency=1))
    assert runtime.invoke("Remember", {"caller": "warm-up", "hold_seconds": 0}).ok

    # When five callers invoke it at once
    results = burst(runtime, "Remember", [{"caller": f"c{n}", "hold_seconds": 0.5} for n in range(5)])

    # Then the ones served never overlapped, and the others got Lambda's throttle, as on AWS
    served = [result for result in results if result.ok]
    throttled = [result for result in results if result.throttled]
    assert served and throttled
    assert len(served) + len(throttled) == 5
    assert most_at_once(served) == 1
    assert {(result.error or {}).get("errorType") for result in throttled} == {"TooManyRequestsException"}


def test_past_the_local_cap_invocations_wait_for_a_free_worker(runtimes: list[FunctionRuntime]) -> None:
    # Given a function without reserved concurrency, and a cap of two workers per function
    runtime = start(runtimes, spec("Remember", "remember"), max_concurrency=2)

    # When six callers invoke it at once
    results = burst(runtime, "Remember", [{"caller": f"c{n}", "hold_seconds": 0.3} for n in range(6)])

    # Then every one is served, two at a time at most, by two workers
    assert all(result.ok for result in results)
    assert most_at_once(results) <= 2
    assert len({result.payload["pid"] for result in results}) <= 2


def test_sequential_invocations_reuse_one_warm_worker(runtimes: list[FunctionRuntime]) -> None:
    runtime = start(runtimes, spec("Remember", "remember"))
    pids = [runtime.invoke("Remember", {"caller": f"c{n}", "hold_seconds": 0}).payload["pid"] for n in range(3)]
    assert len(set(pids)) == 1


def test_workers_stop_with_the_runtime_and_with_a_parent_that_dies() -> None:
    # Given a process that starts a worker and dies without stopping anything (as a killed stack does)
    script = (
        "import os, sys; from offline.functions import FunctionRuntime, FunctionSpec; from pathlib import Path\n"
        "spec = FunctionSpec('A', 'a', 'tests.offline_functions.remember', Path('.'), 3, 128, 'us-east-1')\n"
        "runtime = FunctionRuntime({'A': spec}, {})\n"
        "print(runtime.invoke('A', {'caller': 'x', 'hold_seconds': 0}).worker_pid, flush=True)\n"
        "os._exit(0)\n"
    )
    finished = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    orphan = int(finished.stdout.strip())

    # Then its worker exits on its own
    assert _gone_within(orphan, seconds=5)


def test_close_stops_every_worker(runtimes: list[FunctionRuntime]) -> None:
    runtime = start(runtimes, spec("Remember", "remember"))
    pids = {result.worker_pid for result in burst(runtime, "Remember", [{"caller": "x", "hold_seconds": 0.2}] * 3)}
    runtime.close()
    assert all(pid is not None and not _alive(pid) for pid in pids)


def test_the_context_counts_down_from_the_template_timeout() -> None:
    function = {"function_name": "stack-A", "memory_mb": 256, "arn": "arn:aws:lambda:us-east-1:1:function:stack-A"}
    context = LambdaContext(function, "req-1", time.time() + 20)
    assert (context.function_name, context.memory_limit_in_mb, context.aws_request_id) == ("stack-A", 256, "req-1")
    assert 19_000 < context.get_remaining_time_in_millis() <= 20_000


def test_a_raising_handler_gives_lambda_s_error_payload(runtimes: list[FunctionRuntime]) -> None:
    runtime = start(runtimes, spec("Fail", "fail"))
    result = runtime.invoke("Fail", {})
    assert not result.ok
    assert result.error is not None
    assert (result.error["errorType"], result.error["errorMessage"]) == ("RuntimeError", "the function failed")
    # The trace starts in the handler, as Lambda's does
    assert "offline/worker.py" not in "".join(result.error["stackTrace"])
    # And the environment survives its handler's exception
    assert runtime.invoke("Fail", {}).worker_pid == result.worker_pid


def test_a_bad_handler_string_fails_the_start() -> None:
    runtime = FunctionRuntime({"Nope": spec("Nope", "no_such_function")}, {})
    with pytest.raises(ValueError, match="has no function no_such_function"):
        runtime.load()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped is a zombie: gone for every purpose here.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


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


@pytest.mark.parametrize(("asked", "reserved"), [("3", 3), ("0", None)])
def test_the_reserved_concurrency_a_parameter_asks_for_is_the_one_enforced(asked: str, reserved: int | None) -> None:
    # Given the template's ReservedConcurrentExecutions as an !If on a parameter (0 = none: AWS::NoValue)
    template = load_template(overrides={"SignupReservedConcurrency": asked, "WebhookReservedConcurrency": asked})

    # Then the offline functions are capped as Lambda would cap them
    specs = function_specs(template)
    assert specs["SignupFunction"].reserved_concurrency == reserved
    assert specs["TierWebhookFunction"].reserved_concurrency == reserved
