"""The offline gateway's AWS_IAM authorization: requests signed by botocore's own SigV4 signer (as every AWS SDK,
the CLI and curl --aws-sigv4 sign them) pass; unsigned, wrongly signed, foreign-keyed and stale ones get API
Gateway's 403 answers."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from offline.events import IncomingRequest
from offline.gateway_responses import GatewayResponses, Refusal
from offline.iam_auth import IamCaller, OperatorCredentials, SigV4Verifier

REGION = "us-east-1"
HOST = "127.0.0.1:3000"
STAGE = "live"
CREDENTIALS = OperatorCredentials.generate()


def signed(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    key: str = CREDENTIALS.access_key_id,
    secret: str = CREDENTIALS.secret_access_key,
    region: str = REGION,
    service: str = "execute-api",
    headers: dict[str, str] | None = None,
) -> IncomingRequest:
    """What the gateway receives from a client that signed with botocore (the stage is in the signed path)."""
    url = f"http://{HOST}/{STAGE}{path}" + (f"?{urlencode(query)}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    sent = [(name, str(value)) for name, value in request.headers.items()]
    return IncomingRequest(method, path, list(query or []), [("Host", HOST), *sent], body, "127.0.0.1", HOST)


def verify(request: IncomingRequest, now: datetime | None = None) -> IamCaller | Refusal:
    clock = (lambda: now) if now else (lambda: datetime.now(UTC))
    return SigV4Verifier(CREDENTIALS, REGION, clock).verify(request, STAGE)


def answered(result: IamCaller | Refusal) -> tuple[int, dict[str, Any], str | None]:
    assert isinstance(result, Refusal), result
    answer = GatewayResponses().answer(result, "r-1")
    return answer.status, json.loads(answer.body), answer.headers.get("x-amzn-ErrorType")


def test_a_request_signed_with_the_accepted_key_passes_with_the_callers_identity() -> None:
    # Given a GET with a query and a POST with a body, each signed by botocore
    for request in (
        signed("GET", "/admin/partners", [("tier", "free"), ("email", "a+b@example.com"), ("limit", "2")]),
        signed("POST", "/admin/partners/p_1/suspend", body=b'{"reason": "abuse \\u00e9"}'),
    ):
        # Then the gateway accepts it and knows who called
        caller = verify(request)
        assert caller == IamCaller(
            access_key=CREDENTIALS.access_key_id, user_arn=CREDENTIALS.user_arn, user_id=CREDENTIALS.user_id
        )
    assert CREDENTIALS.user_arn == "arn:aws:iam::123456789012:user/offline-operator"


def test_an_unsigned_request_is_missing_authentication_token() -> None:
    request = IncomingRequest("GET", "/admin/partners", [], [("Host", HOST)], b"", "127.0.0.1", HOST)
    assert answered(verify(request)) == (
        HTTPStatus.FORBIDDEN,
        {"message": "Missing Authentication Token"},
        "MissingAuthenticationTokenException",
    )


def test_a_wrong_secret_is_a_signature_mismatch_with_the_canonical_request() -> None:
    status, body, error_type = answered(verify(signed("GET", "/admin/partners", secret="not-the-secret")))
    assert (status, error_type) == (HTTPStatus.FORBIDDEN, "InvalidSignatureException")
    assert body["message"].startswith("The request signature we calculated does not match the signature you provided.")
    assert "The Canonical String for this request should have been\n'GET\n/live/admin/partners\n" in body["message"]
    assert CREDENTIALS.secret_access_key not in body["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"path": "/admin/partners/p_2/suspend"},
        {"query": [("a", "2")]},
        {"body": b'{"reason":"y"}'},
        {"method": "PUT"},
        {"headers": "X-Custom: 2"},
    ],
)
def test_a_request_changed_after_signing_is_refused(changes: dict[str, Any]) -> None:
    # Given a request signed by botocore, then changed on the way
    request = signed("POST", "/admin/partners/p_1/suspend", [("a", "1")], b'{"reason":"x"}', headers={"X-Custom": "1"})
    if "headers" in changes:
        changes["headers"] = [(name, "2" if name == "X-Custom" else value) for name, value in request.headers]
    # Then the signature no longer matches
    assert answered(verify(dataclasses.replace(request, **changes)))[2] == "InvalidSignatureException"


def test_an_unknown_access_key_is_an_invalid_security_token() -> None:
    assert answered(verify(signed("GET", "/admin/partners", key="AKIAIOSFODNN7EXAMPLE"))) == (
        HTTPStatus.FORBIDDEN,
        {"message": "The security token included in the request is invalid."},
        "UnrecognizedClientException",
    )


@pytest.mark.parametrize(
    ("skew", "words"),
    [(-timedelta(minutes=6), "Signature expired:"), (timedelta(minutes=6), "Signature not yet current:")],
)
def test_a_signature_more_than_five_minutes_off_is_refused(skew: timedelta, words: str) -> None:
    # Given a request signed now, checked by a clock 6 minutes away
    request = signed("GET", "/admin/partners")
    status, body, error_type = answered(verify(request, datetime.now(UTC) - skew))
    assert (status, error_type) == (HTTPStatus.FORBIDDEN, "InvalidSignatureException")
    assert body["message"].startswith(words)


def test_a_signature_scoped_to_another_region_or_service_is_refused() -> None:
    region = answered(verify(signed("GET", "/admin/partners", region="eu-west-1")))
    service = answered(verify(signed("GET", "/admin/partners", service="apigateway")))
    assert region[1] == {"message": "Credential should be scoped to a valid region, not 'eu-west-1'. "}
    assert service[1] == {"message": "Credential should be scoped to correct service: 'execute-api'. "}


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer sk-abc",
        "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/execute-api/aws4_request",
        "AWS4-HMAC-SHA256",
    ],
)
def test_an_authorization_header_without_its_parts_is_an_incomplete_signature(authorization: str) -> None:
    request = IncomingRequest(
        "GET", "/admin/partners", [], [("Host", HOST), ("Authorization", authorization)], b"", "127.0.0.1", HOST
    )
    status, _, error_type = answered(verify(request))
    assert (status, error_type) == (HTTPStatus.FORBIDDEN, "IncompleteSignatureException")
