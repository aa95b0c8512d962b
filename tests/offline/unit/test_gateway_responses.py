"""API Gateway's own refusals as the template customizes them, answered by the offline gateway from the same
template: each keeps API Gateway's `message` and adds what its clients read (OpenAI's `error` for the AI
routes' key, throttle and quota refusals; the control plane's `details` for a body the validator refused)."""

import json
from http import HTTPStatus
from typing import Any

import pytest

from offline.gateway_responses import REFUSALS, GatewayAnswer, GatewayResponses, Refusal, ResponseType
from offline.template import StackTemplate


@pytest.fixture(scope="module")
def responses(template: StackTemplate) -> GatewayResponses:
    return GatewayResponses(template.resources["MeteredApi"]["Properties"]["GatewayResponses"])


def body(answer: GatewayAnswer) -> Any:
    return json.loads(answer.body)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ResponseType.QUOTA_EXCEEDED, (429, "Limit Exceeded", "insufficient_quota", "insufficient_quota")),
        (ResponseType.THROTTLED, (429, "Too Many Requests", "requests", "rate_limit_exceeded")),
        (ResponseType.INVALID_API_KEY, (403, "Forbidden", "invalid_request_error", "invalid_api_key")),
    ],
)
def test_key_throttle_and_quota_refusals_carry_api_gateways_message_and_openais_error(
    responses: GatewayResponses, kind: ResponseType, expected: tuple[int, str, str, str]
) -> None:
    # When API Gateway refuses a request itself
    answer = responses.answer(REFUSALS[kind], "r-1")

    # Then the status is API Gateway's, `message` is still there, and `error` has OpenAI's four fields
    refused = body(answer)
    assert (answer.status, refused["message"], refused["error"]["type"], refused["error"]["code"]) == expected
    assert set(refused["error"]) == {"message", "type", "param", "code"}
    assert refused["error"]["param"] is None
    assert refused["error"]["message"]


def test_a_spent_quota_tells_openais_sdks_not_to_retry_and_a_throttle_says_when_to(
    responses: GatewayResponses,
) -> None:
    quota = responses.answer(REFUSALS[ResponseType.QUOTA_EXCEEDED], "r-1")
    throttled = responses.answer(REFUSALS[ResponseType.THROTTLED], "r-2")

    assert quota.headers["x-should-retry"] == "false"
    assert throttled.headers["Retry-After"] == "1"
    assert "x-should-retry" not in throttled.headers


def test_a_body_the_validator_refuses_gets_the_control_planes_shape_with_the_validators_words(
    responses: GatewayResponses,
) -> None:
    # Given the validator's error text, which quotes property names
    default = REFUSALS[ResponseType.BAD_REQUEST_BODY]
    errors = '[object has missing required properties (["email"]), string "a\\b" is too long]'
    refusal = Refusal(default.type, default.status, default.message, errors)

    # When the gateway answers
    answer = responses.answer(refusal, "r-1")

    # Then the body is valid JSON in the control plane's shape, with one `details` entry holding every problem
    assert answer.status == HTTPStatus.BAD_REQUEST
    assert body(answer) == {
        "error": {
            "code": "invalid_request",
            "message": "Invalid request body",
            "details": [{"field": "body", "message": errors}],
        }
    }
