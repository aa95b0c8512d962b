"""Bursts of concurrent callers against the offline stack over HTTP: each caller gets its own partner, key and
answer, and each key is metered for its own tokens, as Lambda's one-invocation-per-environment guarantees."""

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http, start_offline

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

SIGNUPS = 40
COMPLETIONS = 60
# A burst queues for the workers (8 per function): on a busy machine the last caller waits long.
PATIENCE_SECONDS = 180
# Every limit out of the way: the burst is about isolation, not about throttles, quotas or budgets.
BURST_PARAMS = (
    "SignupRateLimit=1000 SignupBurstLimit=1000 SignupReservedConcurrency=0 FreeRateLimit=1000 FreeBurstLimit=1000 "
    "FreeQuotaLimit=100000 FreeTokenBudget=1000000"
)


@pytest.fixture(scope="module")
def burst_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("burst") / "state", BURST_PARAMS, "--no-management-rate-limits")
    yield stack
    stack.stop()


def all_at_once(calls: list[Callable[[], Answer]]) -> list[Answer]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def sign_up(stack: RunningStack, email: str) -> Callable[[], Answer]:
    return lambda: http(
        "POST", stack.url("/signup"), body={"name": f"Partner {email}", "email": email}, timeout=PATIENCE_SECONDS
    )


def complete(stack: RunningStack, api_key: str, content: str) -> Callable[[], Answer]:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": content}], "max_tokens": 50}
    headers = {"Authorization": f"Bearer {api_key}"}
    return lambda: http("POST", stack.url("/v1/chat/completions"), headers, body, timeout=PATIENCE_SECONDS)


def test_a_burst_of_signups_and_chat_completions_gives_each_caller_its_own_answer(burst_stack: RunningStack) -> None:
    # Given 40 people signing up at the same moment, each with a distinct email
    emails = [f"burst-{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(SIGNUPS)]

    # When they all sign up at once
    signed_up = all_at_once([sign_up(burst_stack, email) for email in emails])

    # Then each got a new partner and key of their own: no 409 for a distinct email, nobody else's partner
    assert [answer.status for answer in signed_up] == [HTTPStatus.CREATED] * SIGNUPS, [
        answer.body for answer in signed_up if answer.status != HTTPStatus.CREATED
    ]
    partners: list[dict[str, Any]] = [answer.body for answer in signed_up]
    assert len({partner["partner_id"] for partner in partners}) == SIGNUPS
    assert len({partner["api_key"] for partner in partners}) == SIGNUPS
    assert len({partner["api_key_id"] for partner in partners}) == SIGNUPS

    # When 60 chat completions go out at once, spread over the keys, each with a message of its own
    callers = [(partners[n % SIGNUPS]["api_key"], f"caller {n} says " + "word " * (n % 7)) for n in range(COMPLETIONS)]
    answers = all_at_once([complete(burst_stack, key, content) for key, content in callers])

    # Then each answer is its own request's (the offline model echoes the message)
    assert [answer.status for answer in answers] == [HTTPStatus.OK] * COMPLETIONS, [
        answer.body for answer in answers if answer.status != HTTPStatus.OK
    ]
    assert [answer.body["choices"][0]["message"]["content"] for answer in answers] == [
        content.strip() for _, content in callers
    ]
    # And each key was metered for exactly the tokens of its own completions
    spent: Counter[str] = Counter()
    for (key, _), answer in zip(callers, answers, strict=True):
        spent[key] += answer.body["usage"]["total_tokens"]
    for key, tokens in spent.items():
        usage = http("GET", burst_stack.url("/v1/usage"), headers={"Authorization": f"Bearer {key}"})
        assert usage.status == HTTPStatus.OK
        assert usage.body["tokens"]["used"] == tokens


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def gone(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_functions_workers_end_with_the_stack(tmp_path: Path, stop: signal.Signals) -> None:
    # Given a running stack whose functions have served requests (one worker per function, pre-warmed)
    stack = start_offline(tmp_path / "state")
    try:
        assert http("GET", stack.url("/v1/models")).status == HTTPStatus.FORBIDDEN
        workers = children_of(stack.process.pid)
        assert len(workers) >= len(stack.info["functions"])

        # When the stack is stopped (Ctrl-C, SIGTERM) or killed outright
        stack.process.send_signal(stop)
        stack.process.wait(timeout=20)

        # Then no worker is left behind
        assert gone(workers, seconds=5)
    finally:
        stack.stop()
