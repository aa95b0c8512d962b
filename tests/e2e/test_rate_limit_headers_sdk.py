"""OpenAI's rate-limit headers as the official SDK sees them through the offline stack's gateway: they fall
with each call and say what GET /v1/usage says; API Gateway's own 429 (a spent quota) has none."""

import uuid
from collections.abc import Iterator
from http import HTTPStatus

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

FREE_QUOTA = 5
AI_PARAMS = (
    f"FreeRateLimit=100 FreeBurstLimit=100 FreeTokenBudget=60 FreeDefaultMaxTokens=8 FreeQuotaLimit={FREE_QUOTA}"
)


@pytest.fixture(scope="module")
def ai_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("ratelimits") / "state", AI_PARAMS)
    yield stack
    stack.stop()


def test_the_sdk_reads_falling_headers_that_match_v1_usage_until_the_gateway_refuses(ai_stack: RunningStack) -> None:
    # Given a free partner (5 requests and 60 tokens a day here) and the SDK with nothing but base_url and key
    signed = http("POST", ai_stack.url("/signup"), body={"name": "Acme", "email": f"rl-{uuid.uuid4().hex[:8]}@x.io"})
    assert signed.status == HTTPStatus.CREATED, signed
    key = signed.body["api_key"]
    client = OpenAI(base_url=ai_stack.url("/v1"), api_key=key, timeout=20, max_retries=0)

    # When it lists models, creates a completion (3 prompt + 3 completion tokens) and reads its usage
    listed = client.models.with_raw_response.list()
    completed = client.chat.completions.with_raw_response.create(
        model="nova-micro", messages=[{"role": "user", "content": "one two three"}], max_tokens=10
    )
    standing = http("GET", ai_stack.url("/v1/usage"), headers={"Authorization": f"Bearer {key}"})

    # Then each answer's headers took one request and what the completion used, and /v1/usage's match its body
    assert [listed.headers["x-ratelimit-remaining-requests"], completed.headers["x-ratelimit-remaining-requests"]] == [
        "4",
        "3",
    ]
    assert [listed.headers["x-ratelimit-remaining-tokens"], completed.headers["x-ratelimit-remaining-tokens"]] == [
        "60",
        "54",
    ]
    headers = {name.lower(): value for name, value in standing.headers.items()}
    assert headers["x-ratelimit-limit-requests"] == str(standing.body["requests"]["limit"]) == str(FREE_QUOTA)
    assert headers["x-ratelimit-remaining-requests"] == str(standing.body["requests"]["remaining"]) == "2"
    assert headers["x-ratelimit-remaining-tokens"] == str(standing.body["tokens"]["remaining"]) == "54"
    assert headers["x-ratelimit-reset-requests"].endswith("s")

    # And once the quota is spent, API Gateway's own 429 cannot carry them
    client.models.list()
    client.models.list()
    with pytest.raises(openai.RateLimitError) as refused:
        client.models.list()
    assert refused.value.response.json()["message"] == "Limit Exceeded"
    assert not [name for name in refused.value.response.headers if name.lower().startswith("x-ratelimit-")]
