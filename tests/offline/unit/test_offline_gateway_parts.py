"""Pieces of the local API Gateway: route matching, gateway responses, proxy events and responses."""

import json
from http import HTTPStatus
from typing import Any

import pytest

from offline.api_keys import HeaderKeySource, KeyRegistry, Throttle
from offline.events import IncomingRequest, MalformedProxyResponse, read_proxy_response
from offline.functions import InvocationResult
from offline.gateway import ApiStage, LocalGateway, stage_method_throttles
from offline.gateway_responses import REFUSALS, GatewayResponses, ResponseType
from offline.routes import Route, RouteTable


def route(method: str, path: str) -> Route:
    return Route(method, path, f"{method} {path}", "Api", api_key_required=False)


def test_routes_prefer_literal_segments_then_parameters_then_greedy_paths() -> None:
    # Given overlapping resources, as API Gateway allows them
    table = RouteTable(
        [
            route("GET", "/v1/{proxy+}"),
            route("GET", "/v1/models/{model_id}"),
            route("GET", "/v1/models/default"),
            route("GET", "/v1/models"),
        ]
    )

    def matched(path: str) -> tuple[str, dict[str, str]] | None:
        found = table.match("GET", path)
        return (found[0].resource_path, found[1]) if found else None

    # Then the most specific resource wins, and parameters arrive URL-decoded
    assert matched("/v1/models") == ("/v1/models", {})
    assert matched("/v1/models/default") == ("/v1/models/default", {})
    assert matched("/v1/models/gpt%2F4") == ("/v1/models/{model_id}", {"model_id": "gpt/4"})
    assert matched("/v1/files/a/b") == ("/v1/{proxy+}", {"proxy": "files/a/b"})
    assert matched("/v2/models") is None
    assert table.match("POST", "/v1/models") is None


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        (ResponseType.INVALID_API_KEY, 403, {"message": "Forbidden"}),
        (ResponseType.MISSING_AUTHENTICATION_TOKEN, 403, {"message": "Missing Authentication Token"}),
        (ResponseType.THROTTLED, 429, {"message": "Too Many Requests"}),
        (ResponseType.QUOTA_EXCEEDED, 429, {"message": "Limit Exceeded"}),
        (ResponseType.BAD_REQUEST_BODY, 400, {"message": "Invalid request body"}),
        (ResponseType.LAMBDA_FAILURE, 502, {"message": "Internal server error"}),
    ],
)
def test_default_gateway_responses_are_api_gateway_s_exact_bodies(
    kind: ResponseType, status: int, body: dict[str, str]
) -> None:
    answer = GatewayResponses().answer(REFUSALS[kind], "request-1")
    assert (answer.status, json.loads(answer.body)) == (status, body)
    assert answer.body == json.dumps(body, separators=(",", ":")).encode()
    assert answer.headers["Content-Type"] == "application/json"


def test_the_template_s_gateway_responses_override_status_body_and_headers() -> None:
    # Given an API that customizes INVALID_API_KEY and every other 4XX
    key_template = (
        '{"error":{"code":"invalid_api_key","message":$context.error.messageString,"request":"$context.requestId"}}'
    )
    responses = GatewayResponses(
        {
            "INVALID_API_KEY": {
                "StatusCode": "401",
                "ResponseParameters": {
                    "Headers": {"WWW-Authenticate": "'ApiKey'", "X-Echo": "method.request.header.x-trace"}
                },
                "ResponseTemplates": {"application/json": key_template},
            },
            "DEFAULT_4XX": {"ResponseTemplates": {"application/json": '{"error":$context.error.messageString}'}},
        }
    )

    # When a key and a throttle refusal are answered
    key = responses.answer(REFUSALS[ResponseType.INVALID_API_KEY], "r-1", {"x-trace": "t-9"}.get)
    throttled = responses.answer(REFUSALS[ResponseType.THROTTLED], "r-2")

    # Then the override applies with $context substituted, and DEFAULT_4XX covers the rest with their own status
    assert key.status == HTTPStatus.UNAUTHORIZED
    assert json.loads(key.body) == {"error": {"code": "invalid_api_key", "message": "Forbidden", "request": "r-1"}}
    assert (key.headers["WWW-Authenticate"], key.headers["X-Echo"]) == ("ApiKey", "t-9")
    assert (throttled.status, json.loads(throttled.body)) == (
        HTTPStatus.TOO_MANY_REQUESTS,
        {"error": "Too Many Requests"},
    )


def test_stage_method_settings_become_throttles_by_resource_path_and_method() -> None:
    settings = (
        {"ResourcePath": "/*", "HttpMethod": "*", "MetricsEnabled": True},
        {"ResourcePath": "/~1signup", "HttpMethod": "POST", "ThrottlingRateLimit": "5", "ThrottlingBurstLimit": "10"},
        {"ResourcePath": "/~1v1~1models", "HttpMethod": "get", "ThrottlingRateLimit": 2, "ThrottlingBurstLimit": 4},
    )
    assert stage_method_throttles(settings) == {
        ("/signup", "POST"): Throttle(rate=5, burst=10),
        ("/v1/models", "GET"): Throttle(rate=2, burst=4),
    }


def test_a_proxy_response_is_read_as_api_gateway_reads_it() -> None:
    response = read_proxy_response(
        {
            "statusCode": 201,
            "headers": {"X-A": "1"},
            "multiValueHeaders": {"X-B": ["2", "3"]},
            "body": "aGk=",
            "isBase64Encoded": True,
        }
    )
    assert response.status == HTTPStatus.CREATED
    assert response.headers == [("X-B", "2"), ("X-B", "3"), ("X-A", "1"), ("Content-Type", "application/json")]
    assert response.body == b"hi"


@pytest.mark.parametrize(
    "result",
    [
        None,
        "text",
        {"body": "x"},
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 99},
    ],
)
def test_a_result_that_is_not_a_proxy_response_is_malformed(result: object) -> None:
    with pytest.raises(MalformedProxyResponse):
        read_proxy_response(result)


class SlowRuntime:
    """A function runtime whose one invocation took `seconds`, streaming `chunks` (none: a buffered answer)."""

    def __init__(self, seconds: float, chunks: list[bytes] | None) -> None:
        self.seconds = seconds
        self.chunks = chunks

    def invoke(self, function_id: str, event: Any, request_id: str, on_chunk: Any = None) -> InvocationResult:
        for chunk in self.chunks or []:
            on_chunk(chunk)
        payload = None if self.chunks is not None else {"statusCode": 200, "body": "late"}
        return InvocationResult(request_id, payload, duration_ms=self.seconds * 1000, streamed=self.chunks is not None)


def slow_gateway(seconds: float, *, streaming: bool, silent: bool = False) -> LocalGateway:
    chunks = [b'{"statusCode": 200}', b"\0" * 8, b"data: late\n\n"] if streaming else None
    if silent:
        chunks = []
    routes = RouteTable([Route("POST", "/late", "Late", "Api", api_key_required=False, streaming=streaming)])
    stage = ApiStage("Api", "api-id", "live", routes, GatewayResponses(), HeaderKeySource())
    return LocalGateway([stage], SlowRuntime(seconds, chunks), KeyRegistry("us-east-1"), None)  # type: ignore[arg-type]


def late_request() -> IncomingRequest:
    return IncomingRequest("POST", "/late", [], [], b"", "198.51.100.7", "127.0.0.1")


def test_a_buffered_integration_times_out_at_29_s() -> None:
    # Given a buffered route whose function answered after 40 s
    result = slow_gateway(40, streaming=False).handle("live", late_request())

    # Then API Gateway's integration timeout
    assert (result.status, json.loads(result.body)) == (
        HTTPStatus.GATEWAY_TIMEOUT,
        {"message": "Endpoint request timed out"},
    )


def test_a_streaming_integration_may_run_up_to_15_minutes() -> None:
    # Given a streaming route (integration timeout 900,000 ms) whose function streamed after 40 s, or sent
    # nothing usable in 40 s, or nothing in 16 minutes
    streamed = slow_gateway(40, streaming=True).handle("live", late_request())
    failed = slow_gateway(40, streaming=True, silent=True).handle("live", late_request())
    beyond = slow_gateway(16 * 60, streaming=True, silent=True).handle("live", late_request())

    # Then 40 s is within its limit: the stream is the answer, or the function's failure (502, not 504)
    assert (streamed.status, streamed.body) == (HTTPStatus.OK, b"data: late\n\n")
    assert failed.status == HTTPStatus.BAD_GATEWAY
    # And past 15 minutes it is the integration timeout
    assert beyond.status == HTTPStatus.GATEWAY_TIMEOUT
