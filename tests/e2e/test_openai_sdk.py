"""The official OpenAI Python SDK against the offline stack, unchanged: only base_url and api_key (or the key
in x-api-key through default_headers). The stack runs the template's AI functions behind the local API
Gateway, with the template's key source (the authorizer's rule) and the offline model provider."""

import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

# Throttle out of the way; a small token budget (free: 60 tokens a day) and request quota (8 a day) to spend.
FREE_QUOTA = 8
AI_PARAMS = (
    f"FreeRateLimit=100 FreeBurstLimit=100 FreeTokenBudget=60 FreeDefaultMaxTokens=8 FreeQuotaLimit={FREE_QUOTA}"
)


@pytest.fixture(scope="module")
def ai_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("ai") / "state", AI_PARAMS)
    yield stack
    stack.stop()


def sign_up(stack: RunningStack) -> dict[str, Any]:
    answer = http(
        "POST", stack.url("/signup"), body={"name": "SDK user", "email": f"sdk-{uuid.uuid4().hex[:8]}@example.com"}
    )
    assert answer.status == HTTPStatus.CREATED, answer
    return dict(answer.body)


def usage(stack: RunningStack, api_key: str) -> dict[str, Any]:
    answer = http("GET", stack.url("/v1/usage"), headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status == HTTPStatus.OK, answer
    return dict(answer.body)


def test_the_sdk_needs_only_base_url_and_api_key(ai_stack: RunningStack) -> None:
    # Given a partner's key and the SDK configured with nothing else
    partner = sign_up(ai_stack)
    client = OpenAI(base_url=ai_stack.url("/v1"), api_key=partner["api_key"], timeout=20)

    # When it lists models and creates a chat completion
    models = client.models.list()
    completion = client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello metered world"}],
        max_tokens=10,
    )

    # Then the SDK parsed both, and reads the usage the offline provider's rule gives (5 words in, 3 out)
    assert [model.id for model in models.data] == ["nova-micro"]
    assert completion.object == "chat.completion"
    assert completion.model == "nova-micro"
    assert completion.choices[0].message.content == "hello metered world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        5,
        3,
        8,
    )
    assert completion.id.startswith("chatcmpl-")


def test_the_sdk_works_with_the_key_in_x_api_key(ai_stack: RunningStack) -> None:
    # Given the key in x-api-key through default_headers (the SDK still sends its own Authorization header)
    partner = sign_up(ai_stack)
    client = OpenAI(
        base_url=ai_stack.url("/v1"),
        api_key="sk-placeholder-not-a-key",
        default_headers={"x-api-key": partner["api_key"]},
        timeout=20,
    )

    # When it creates a chat completion
    completion = client.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "via x-api-key"}], max_tokens=10
    )

    # Then x-api-key was the key used, and the call is on the partner's ledger
    assert completion.usage is not None
    assert completion.usage.total_tokens == 4
    assert usage(ai_stack, partner["api_key"])["tokens"]["used"] == 4


def test_a_spent_budget_is_insufficient_quota_and_the_sdk_does_not_retry(ai_stack: RunningStack) -> None:
    # Given a free partner (60 tokens a day here) that spent 50 of them
    partner = sign_up(ai_stack)
    client = OpenAI(base_url=ai_stack.url("/v1"), api_key=partner["api_key"], timeout=20)
    client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "w " * 25}], max_tokens=25)

    # When it asks for more than the 10 left (5 prompt + 8, the tier's default max_tokens)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "a b c d e"}])

    # Then the SDK raises OpenAI's insufficient_quota error and does not retry it: 2 requests so far, + this one
    assert refused.value.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.value.code == "insufficient_quota"
    assert refused.value.type == "insufficient_quota"
    standing = usage(ai_stack, partner["api_key"])
    assert standing["requests"]["used"] == 3
    assert standing["tokens"] == {
        "prompt": 25,
        "completion": 25,
        "used": 50,
        "reserved": 0,
        "carried": 0,
        "budget": 60,
        "extension": 0,
        "remaining": 10,
    }


def test_a_model_outside_the_tier_and_a_bad_key_are_refused(ai_stack: RunningStack) -> None:
    partner = sign_up(ai_stack)
    client = OpenAI(base_url=ai_stack.url("/v1"), api_key=partner["api_key"], timeout=20, max_retries=0)
    stranger = OpenAI(base_url=ai_stack.url("/v1"), api_key="not-a-key-of-this-stack-000000", timeout=20)

    # A model the free tier does not include: 403 in OpenAI's shape, from the function
    with pytest.raises(openai.PermissionDeniedError) as outside:
        client.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "hi"}])
    assert outside.value.code == "model_not_in_tier"
    # A key API Gateway does not know: its own 403 Forbidden, before any function runs
    with pytest.raises(openai.PermissionDeniedError) as unknown:
        stranger.models.list()
    assert unknown.value.status_code == HTTPStatus.FORBIDDEN
    assert unknown.value.code == "invalid_api_key"
    assert unknown.value.response.json()["message"] == "Forbidden"
    # stream_options without stream: a clear 400, as OpenAI answers it
    with pytest.raises(openai.BadRequestError) as streaming:
        client.chat.completions.create(
            model="nova-micro", messages=[{"role": "user", "content": "hi"}], stream_options={"include_usage": True}
        )
    assert streaming.value.param == "stream_options"


def test_a_spent_request_quota_is_insufficient_quota_and_the_sdk_does_not_retry(ai_stack: RunningStack) -> None:
    # Given a free partner that used its whole request quota (8 a day here), and an SDK client that counts what
    # it sends to the gateway (with the SDK's default retries: two for a 429 it is not told to give up on)
    partner = sign_up(ai_stack)
    sent: list[str] = []
    counting = openai.DefaultHttpxClient(event_hooks={"request": [lambda request: sent.append(request.url.path)]})
    client = OpenAI(base_url=ai_stack.url("/v1"), api_key=partner["api_key"], timeout=20, http_client=counting)
    for _ in range(FREE_QUOTA):
        client.models.list()

    # When it asks for a completion
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "hi"}])

    # Then API Gateway's own 429 reads as OpenAI's insufficient_quota, keeps its message, and was sent once
    assert refused.value.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert (refused.value.code, refused.value.type) == ("insufficient_quota", "insufficient_quota")
    assert refused.value.response.json()["message"] == "Limit Exceeded"
    assert sum(path.endswith("/v1/chat/completions") for path in sent) == 1
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == FREE_QUOTA + 1
