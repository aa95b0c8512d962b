"""A method throttle inside a usage plan, over real HTTP: the pro plan throttles POST /v1/chat/completions
tighter (`ProChatCompletionsRateLimit`/`BurstLimit`) than its other routes, as API Gateway does."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http, start_offline

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

# Pro: the plan lets 100 requests/s through, chat completions 1 request/s with a burst of 1.
PARAMS = (
    "SelfServiceTiers=free,pro ProRateLimit=100 ProBurstLimit=100 ProQuotaLimit=1000 "
    "ProChatCompletionsRateLimit=1 ProChatCompletionsBurstLimit=1"
)


@pytest.fixture(scope="module")
def throttled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("method-throttle") / "state", PARAMS)
    yield stack
    stack.stop()


def sign_up(stack: RunningStack, tier: str) -> dict[str, Any]:
    answer = http("POST", stack.url("/signup"), body={"name": "Ada", "email": f"ada-{tier}@example.com", "tier": tier})
    assert answer.status == HTTPStatus.CREATED, answer
    return dict(answer.body)


def at_once(requests: int, send: Any) -> list[Answer]:
    with ThreadPoolExecutor(max_workers=requests) as pool:
        return sorted(pool.map(lambda _: send(), range(requests)), key=lambda answer: answer.status)


def chat(stack: RunningStack, api_key: str) -> Answer:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}
    return http("POST", stack.url("/v1/chat/completions"), {"Authorization": f"Bearer {api_key}"}, body)


def models(stack: RunningStack, api_key: str) -> Answer:
    return http("GET", stack.url("/v1/models"), {"Authorization": f"Bearer {api_key}"})


def test_chat_completions_are_throttled_at_the_method_rate_while_other_routes_pass(
    throttled_stack: RunningStack,
) -> None:
    # Given a pro key (chat completions: 1 request/s, burst 1; everything else 100/s)
    partner = sign_up(throttled_stack, "pro")

    # When it sends three chat completions at once, then three model listings at once
    chats = at_once(3, lambda: chat(throttled_stack, partner["api_key"]))
    listings = at_once(3, lambda: models(throttled_stack, partner["api_key"]))

    # Then one completion passes and API Gateway throttles the others, while every listing passes
    assert [answer.status for answer in chats] == [HTTPStatus.OK] + [HTTPStatus.TOO_MANY_REQUESTS] * 2
    assert all(answer.body["message"] == "Too Many Requests" for answer in chats[1:])
    assert [answer.status for answer in listings] == [HTTPStatus.OK] * 3

    # And /v1/usage reports both throttles
    usage = http("GET", throttled_stack.url("/v1/usage"), {"x-api-key": partner["api_key"]})
    assert usage.status == HTTPStatus.OK
    assert usage.body["throttle"] == {
        "rate_limit": 100.0,
        "burst_limit": 100,
        "chat_completions": {"rate_limit": 1.0, "burst_limit": 1},
    }


def test_a_tier_without_a_method_throttle_keeps_its_plans_throttle_for_chat(throttled_stack: RunningStack) -> None:
    # Given a free key (no chat completions throttle: the plan's 5/s, burst 10 applies)
    partner = sign_up(throttled_stack, "free")

    # When it sends three chat completions at once
    chats = at_once(3, lambda: chat(throttled_stack, partner["api_key"]))

    # Then all pass, and stack.json shows the free plan without a method throttle
    assert [answer.status for answer in chats] == [HTTPStatus.OK] * 3
    assert throttled_stack.info["tiers"]["free"].get("method_throttles", {}) == {}
    assert throttled_stack.info["tiers"]["pro"]["method_throttles"] == {
        "/v1/chat/completions/POST": {"rate_limit": 1.0, "burst_limit": 1}
    }
