"""OpenAI's rate-limit headers on the AI functions' answers, in-process on the emulated stack: they fall as
calls are made, they say what GET /v1/usage says, and the 429s we answer ourselves carry them."""

import re
from datetime import datetime, timedelta
from http import HTTPStatus

import boto3

from core.ai import service as ai_api
from core.periods import period_bounds, period_key
from handlers import models, usage
from offline.provision import ProvisionedStack
from tests.fake_openai_upstream import FakeUpstream, error_body
from tests.integration.ai import test_ai_api
from tests.integration.ai.test_ai_api import Answer, assert_openai_error, call, chat, chat_handler, event, sign_up

# The AI functions' fixtures: the stack with small budgets, and the chat function on a fake upstream.
ai_template, ai_stack, upstream = test_ai_api.ai_template, test_ai_api.ai_stack, test_ai_api.upstream

REQUEST_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)$")


def seconds(duration: str) -> float:
    """A reset as a client reads it (Go's duration syntax, as OpenAI sends it)."""
    found = DURATION.match(duration)
    assert found, duration
    hours, minutes, secs = found.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs or 0)


def numbers(answer: Answer) -> tuple[int, int, int | None]:
    """Requests remaining, requests limit, tokens remaining (None when the token headers are absent)."""
    tokens = answer.headers.get("x-ratelimit-remaining-tokens")
    return (
        int(answer.headers["x-ratelimit-remaining-requests"]),
        int(answer.headers["x-ratelimit-limit-requests"]),
        None if tokens is None else int(tokens),
    )


def list_models(key_id: str) -> Answer:
    return call(models.handler, event("get_models.json", key_id))


def read_usage(key_id: str) -> Answer:
    return call(usage.handler, event("get_usage.json", key_id))


def test_the_headers_fall_as_calls_are_made_and_match_v1_usage(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (1000 requests and 200 tokens a day)
    partner = sign_up()

    # When it lists models, makes a completion (4 prompt + 4 completion tokens), then reads its usage
    listed = list_models(partner.api_key_id)
    completed = chat(partner.api_key_id, words=4, max_tokens=10)
    standing = read_usage(partner.api_key_id)

    # Then every answer carries the six headers, and each call takes one request and what it used
    for answer in (listed, completed, standing):
        assert answer.status == HTTPStatus.OK, answer.body
        assert set(REQUEST_HEADERS + TOKEN_HEADERS) <= set(answer.headers)
        assert answer.headers["x-ratelimit-limit-tokens"] == "200"
    assert numbers(listed) == (999, 1000, 200)
    assert numbers(completed) == (998, 1000, 192)
    assert numbers(standing) == (997, 1000, 192)
    # And /v1/usage's headers say what its body says, the reset included
    body = standing.body
    assert numbers(standing) == (body["requests"]["remaining"], body["requests"]["limit"], body["tokens"]["remaining"])
    until_reset = datetime.fromisoformat(body["period"]["resets_at"]) - datetime.fromisoformat(body["as_of"])
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert abs(seconds(standing.headers[name]) - until_reset.total_seconds()) <= 2


def test_the_reset_is_the_quota_periods(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (quota period DAY)
    partner = sign_up()

    # When it lists models
    answer = list_models(partner.api_key_id)

    # Then both resets are the time left until the next UTC midnight, not a per-minute window
    _, reset = period_bounds("DAY", ai_api.datetime.now(ai_api.UTC))
    left = (reset - ai_api.datetime.now(ai_api.UTC)).total_seconds()
    assert answer.headers["x-ratelimit-reset-requests"] == answer.headers["x-ratelimit-reset-tokens"]
    assert 0 <= seconds(answer.headers["x-ratelimit-reset-requests"]) - left <= 2


def test_the_token_budget_429_carries_the_headers(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (200 tokens) that has used 150 of them in its first request
    partner = sign_up()
    assert chat(partner.api_key_id, words=75, max_tokens=75).status == HTTPStatus.OK

    # When it asks for more than the 50 left
    refused = chat(partner.api_key_id, words=10, max_tokens=50)

    # Then the 429 says what is left: the refused request counted, its tokens not
    assert_openai_error(refused, HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
    assert refused.headers["x-should-retry"] == "false"
    assert numbers(refused) == (998, 1000, 50)
    assert refused.headers["x-ratelimit-limit-tokens"] == "200"
    assert seconds(refused.headers["x-ratelimit-reset-tokens"]) > 0
    assert numbers(read_usage(partner.api_key_id)) == (997, 1000, 50)


def test_the_upstream_throttled_429_carries_the_headers(upstream: FakeUpstream, ai_stack: ProvisionedStack) -> None:
    # Given a free partner and an upstream that throttles
    partner = sign_up()
    upstream.then_answer(429, error_body("slow down", "requests"))

    # When the partner asks for a completion
    refused = chat(partner.api_key_id, words=4, max_tokens=10)

    # Then our 429 carries Retry-After and the partner's own standing: its reservation given back
    assert_openai_error(refused, HTTPStatus.TOO_MANY_REQUESTS, "rate_limit_error", "upstream_rate_limited")
    assert refused.headers["retry-after"]
    assert numbers(refused) == (999, 1000, 200)


def test_an_unlimited_tier_gets_no_token_headers(ai_stack: ProvisionedStack) -> None:
    # Given an enterprise partner (EnterpriseTokenBudget=0: unlimited; 10 000 000 requests a month)
    partner = sign_up(tier="enterprise")

    # When it makes a completion and reads its usage
    answers = [chat(partner.api_key_id, words=4, max_tokens=10), read_usage(partner.api_key_id)]

    # Then the request quota is stated and no token limit is made up
    for answer in answers:
        assert answer.status == HTTPStatus.OK, answer.body
        assert set(REQUEST_HEADERS) <= set(answer.headers)
        assert not set(TOKEN_HEADERS) & set(answer.headers)
    assert [numbers(answer) for answer in answers] == [(9_999_999, 10_000_000, None), (9_999_998, 10_000_000, None)]
    assert answers[1].body["tokens"]["budget"] is None


def test_the_headers_start_from_the_quota_monitors_reading_as_v1_usage_does(ai_stack: ProvisionedStack) -> None:
    # Given the quota monitor's reading of API Gateway's quota with an operator's grant (2 used, 1018 of 1020 left)
    partner = sign_up()
    start, _ = period_bounds("DAY", ai_api.datetime.now(ai_api.UTC))
    boto3.client("dynamodb").put_item(
        TableName=ai_stack.physical_ids["MeteringTable"],
        Item={
            "pk": {"S": f"KEY#{partner.api_key_id}"},
            "sk": {"S": f"QUOTA#{period_key(start)}"},
            "used": {"N": "2"},
            "remaining": {"N": "1018"},
            "limit": {"N": "1020"},
            "as_of": {"S": period_key(ai_api.datetime.now(ai_api.UTC) - timedelta(minutes=5))},
            "tier": {"S": "free"},
        },
    )

    # When the partner makes three calls (the ledger's 1st to 3rd requests) and reads its usage (the 4th)
    listed = [list_models(partner.api_key_id) for _ in range(3)]
    standing = read_usage(partner.api_key_id)

    # Then the headers count from the reading, as /v1/usage does
    assert [numbers(answer)[:2] for answer in listed] == [(1018, 1020), (1018, 1020), (1017, 1020)]
    requests = standing.body["requests"]
    assert numbers(standing)[:2] == (requests["remaining"], requests["limit"]) == (1016, 1020)


def test_a_refused_request_of_a_partner_carries_the_headers_too(ai_stack: ProvisionedStack) -> None:
    # Given a free partner
    partner = sign_up()

    # When it asks for a model its tier does not include, then sends a body that is not JSON
    outside = chat(partner.api_key_id, model="nova-pro")
    malformed = call(chat_handler, event("chat_completions.json", partner.api_key_id, "{not json"))

    # Then both refusals count against the quota, as API Gateway counts them, and say so
    assert_openai_error(outside, HTTPStatus.FORBIDDEN, "permission_error", "model_not_in_tier")
    assert_openai_error(malformed, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert [numbers(outside), numbers(malformed)] == [(999, 1000, 200), (998, 1000, 200)]
