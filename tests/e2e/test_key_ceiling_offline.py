"""Signup at the account's API key ceiling, over real HTTP on the offline stack (its fidelity layer enforcing a
ceiling of 2 keys through METERED_AI_OFFLINE_API_KEY_LIMIT): 503 `capacity_exhausted`, one CreateApiKey."""

import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http, start_offline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("METERED_AI_OFFLINE_API_KEY_LIMIT", "2")
        stack = start_offline(tmp_path_factory.mktemp("key-ceiling") / "state")
    yield stack
    stack.stop()


def sign_up(stack: RunningStack) -> Answer:
    body = {"name": "Ada", "email": f"ada-{uuid.uuid4().hex[:8]}@example.com"}
    return http("POST", stack.url("/signup"), body=body)


def management_calls(stack: RunningStack) -> dict[str, Any]:
    answer = http("GET", f"{stack.info['control_url']}/management-calls")
    assert answer.status == HTTPStatus.OK
    return dict(answer.body)


def test_signup_at_the_ceiling_answers_503_capacity_exhausted_without_retrying(small_account: RunningStack) -> None:
    # Given an account holding as many API keys as it may (two signups)
    assert [sign_up(small_account).status for _ in range(2)] == [HTTPStatus.CREATED] * 2
    before = management_calls(small_account).get("CreateApiKey", 0)

    # When a third person signs up
    refused = sign_up(small_account)

    # Then one CreateApiKey request was made, not botocore's retries, and the caller hears why, with no
    # Retry-After: the ceiling does not lift with time
    assert management_calls(small_account).get("CreateApiKey", 0) - before == 1
    assert refused.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert refused.body["error"]["code"] == "capacity_exhausted"
    assert "limit of API keys" in refused.body["error"]["message"]
    assert "Retry-After" not in refused.headers

    # And the account still holds only the two partners' keys
    keys = small_account.client("apigateway").get_api_keys(limit=500)["items"]
    assert len(keys) == 2
