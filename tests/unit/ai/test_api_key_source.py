"""Where the AI API reads the key: one rule for the Lambda authorizer and the offline gateway."""

import pytest

from core.ai.api_key_source import key_from_headers
from handlers import api_key_authorizer
from offline.api_keys import AuthorizerKeySource, HeaderKeySource, key_source_for
from offline.template import TemplateError

KEY = "k3yV4lue0123456789abcdefghij"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/live/POST/v1/chat/completions"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-api-key": KEY}, KEY),
        ({"X-API-Key": KEY}, KEY),
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"bearer   {KEY}  "}, KEY),
        # The OpenAI SDK always sends Authorization; x-api-key added through default_headers is the one meant
        ({"Authorization": "Bearer sk-placeholder", "x-api-key": KEY}, KEY),
        ({"Authorization": f"Basic {KEY}"}, None),
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/execute-api/aws4_request"}, None),
        ({"Authorization": "Bearer two words"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"x-api-key": "  "}, None),
        ({}, None),
    ],
)
def test_the_key_comes_from_x_api_key_or_a_bearer_token(headers: dict[str, str], expected: str | None) -> None:
    assert key_from_headers(headers) == expected


def authorizer_event(headers: dict[str, str] | None) -> dict[str, object]:
    """A REST API REQUEST authorizer event (API Gateway developer guide, "Input to a Lambda authorizer")."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/v1/chat/completions",
        "path": "/v1/chat/completions",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in (headers or {}).items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"stage": "live", "httpMethod": "POST", "resourcePath": "/v1/chat/completions"},
    }


def test_the_authorizer_allows_the_method_and_hands_over_the_key() -> None:
    # Given a request with the key as a bearer token
    event = authorizer_event({"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})

    # When the authorizer runs
    answer = api_key_authorizer.handler(event, None)

    # Then it allows exactly this method and returns the key as usageIdentifierKey (API Gateway checks it)
    assert answer == {
        "principalId": "api-key",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}],
        },
        "usageIdentifierKey": KEY,
    }
    # And the key is nowhere else in the answer (principalId shows up in access logs)
    assert str(answer).count(KEY) == 1


@pytest.mark.parametrize("headers", [None, {}, {"Authorization": "Basic abc"}])
def test_without_a_key_the_authorizer_returns_none_and_api_gateway_refuses(headers: dict[str, str] | None) -> None:
    # Given a request without a key
    # When the authorizer runs
    answer = api_key_authorizer.handler(authorizer_event(headers), None)

    # Then it returns no usageIdentifierKey: API Gateway's key check answers its own 403 Forbidden
    assert "usageIdentifierKey" not in answer
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_the_offline_key_source_follows_the_api_key_source_type() -> None:
    assert isinstance(key_source_for("HEADER"), HeaderKeySource)
    authorizer = key_source_for("AUTHORIZER")
    assert isinstance(authorizer, AuthorizerKeySource)
    # Headers reach the key source lower-cased, as the local gateway passes them
    assert authorizer.key_value({"authorization": f"Bearer {KEY}"}) == KEY
    assert authorizer.key_value({"x-api-key": KEY, "authorization": "Bearer other"}) == KEY
    assert HeaderKeySource().key_value({"authorization": f"Bearer {KEY}"}) is None
    with pytest.raises(TemplateError, match="HEADER or AUTHORIZER"):
        key_source_for("COGNITO")
