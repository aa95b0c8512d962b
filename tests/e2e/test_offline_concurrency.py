"""Bursts of concurrent callers against the offline stack over HTTP: each caller gets its own partner, key and
answer, and each key is metered for its own tokens, as Lambda's one-invocation-per-environment guarantees."""

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

SIGNUPS = 40
COMPLETIONS = 60
# Every limit out of the way: the burst is about isolation, not about throttles, quotas or budgets.
BURST_PARAMS = (
    "SignupRateLimit=1000 SignupBurstLimit=1000 FreeRateLimit=1000 FreeBurstLimit=1000 "
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
    return lambda: http("POST", stack.url("/signup"), body={"name": f"Partner {email}", "email": email})


def complete(stack: RunningStack, api_key: str, content: str) -> Callable[[], Answer]:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": content}], "max_tokens": 50}
    return lambda: http(
        "POST", stack.url("/v1/chat/completions"), headers={"Authorization": f"Bearer {api_key}"}, body=body
    )


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
