"""The local API Gateway in-process, on moto with the fidelity patches and fake clocks: what it enforces,
in which order, with which answers, and what the function receives."""

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline import apigateway_fidelity
from offline.api_keys import HeaderKeySource, KeyRegistry, Throttle
from offline.events import IncomingRequest
from offline.functions import FunctionRuntime, FunctionSpec
from offline.gateway import ApiStage, GatewayResult, LocalGateway, ThrottleBuckets, body_validators
from offline.gateway_responses import GatewayResponses
from offline.routes import Route, RouteTable
from offline.server import GatewayServer
from offline.template import ACCOUNT_ID, PROJECT_ROOT

REGION = "us-east-1"
STAGE = "live"
FORBIDDEN = {"message": "Forbidden"}
OK, TOO_MANY = HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS
SIGNUP_SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}


@dataclass
class Clocks:
    """The buckets' monotonic clock and the quota's wall clock, moved only by the test."""

    seconds: float = 100.0
    wall: datetime = field(default_factory=lambda: datetime(2026, 3, 10, 12, 0, tzinfo=UTC))  # a Tuesday

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
        self.wall += timedelta(seconds=seconds)


@dataclass
class Emulated:
    """A REST API stage on the emulator, a gateway in front of it, and what a test needs to set up keys."""

    apigateway: Any
    rest_api_id: str
    clocks: Clocks
    routes: list[Route]
    method_throttles: dict[tuple[str, str], Throttle] = field(default_factory=dict)
    runtimes: list[FunctionRuntime] = field(default_factory=list)

    def gateway(self) -> LocalGateway:
        stage = ApiStage(
            logical_id="Api",
            rest_api_id=self.rest_api_id,
            stage=STAGE,
            routes=RouteTable(self.routes),
            responses=GatewayResponses(),
            key_source=HeaderKeySource(),
            method_throttles=self.method_throttles,
            binary_media_types=("image/png",),
            validators=body_validators(self.routes),
        )
        runtime = FunctionRuntime({name: _spec(name, *function) for name, function in FUNCTIONS.items()}, {})
        runtime.load()
        self.runtimes.append(runtime)
        return LocalGateway(
            [stage],
            runtime,
            KeyRegistry(REGION),
            apigateway_fidelity.ledger(ACCOUNT_ID, REGION),
            buckets=ThrottleBuckets(self.clocks.monotonic),
            now=self.clocks.now,
        )

    def plan(self, *, rate: float | None = None, burst: int | None = None, quota: dict[str, Any] | None = None,
             method_throttles: dict[str, dict[str, float]] | None = None, stage: str = STAGE) -> str:  # fmt: skip
        api_stage: dict[str, Any] = {"apiId": self.rest_api_id, "stage": stage}
        if method_throttles:
            api_stage["throttle"] = method_throttles
        create: dict[str, Any] = {"name": "plan", "apiStages": [api_stage]}
        if rate is not None:
            create["throttle"] = {"rateLimit": rate, "burstLimit": burst}
        if quota:
            create["quota"] = quota
        return str(self.apigateway.create_usage_plan(**create)["id"])

    def key_in(self, plan_id: str, enabled: bool = True) -> dict[str, Any]:
        key: dict[str, Any] = self.apigateway.create_api_key(name="partner", enabled=enabled)
        self.apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
        return key

    def used_today(self, plan_id: str, key_id: str) -> int:
        today = self.clocks.wall.date().isoformat()
        usage = self.apigateway.get_usage(usagePlanId=plan_id, keyId=key_id, startDate=today, endDate=today)
        return int(usage["items"][key_id][0][0])


# Handler, timeout and reserved concurrency of each function.
FUNCTIONS = {
    "Echo": ("echo", 3, None),
    "Fail": ("fail", 3, None),
    "Malformed": ("malformed", 3, None),
    "Sleep": ("sleep", 1, None),
    "Single": ("sleep", 3, 1),
}
ROUTES = [
    Route("GET", "/v1/things", "Echo", "Api", api_key_required=True),
    Route("GET", "/v1/things/{thing_id}", "Echo", "Api", api_key_required=True),
    Route("POST", "/open", "Echo", "Api", api_key_required=False, request_schema=SIGNUP_SCHEMA),
    Route("GET", "/fail", "Fail", "Api", api_key_required=False),
    Route("GET", "/malformed", "Malformed", "Api", api_key_required=False),
    Route("POST", "/sleep", "Sleep", "Api", api_key_required=False),
    Route("POST", "/single", "Single", "Api", api_key_required=False),
    Route("POST", "/echo", "Echo", "Api", api_key_required=False),
]


def _spec(name: str, handler: str, timeout: int, reserved: int | None) -> FunctionSpec:
    return FunctionSpec(
        name,
        f"test-{name}",
        f"tests.offline_functions.{handler}",
        PROJECT_ROOT,
        timeout,
        128,
        REGION,
        reserved_concurrency=reserved,
    )


@pytest.fixture
def emulated() -> Iterator[Emulated]:
    clocks = Clocks()
    apigateway_fidelity.install()
    apigateway_fidelity.set_management_rate_limits(False)
    apigateway_fidelity.set_wall_clock(clocks.now)
    try:
        with mock_aws():
            apigateway = boto3.client("apigateway", region_name=REGION)
            api_id = apigateway.create_rest_api(name="api")["id"]
            emulated = Emulated(apigateway, api_id, clocks, list(ROUTES))
            yield emulated
            for runtime in emulated.runtimes:
                runtime.close()
    finally:
        apigateway_fidelity.set_management_rate_limits(None)
        apigateway_fidelity.set_wall_clock(None)


def call(
    gateway: LocalGateway,
    path: str,
    api_key: str | None = None,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    query: list[tuple[str, str]] | None = None,
) -> GatewayResult:
    sent = list(headers or [])
    if api_key is not None:
        sent.append(("X-API-Key", api_key))
    request = IncomingRequest(method, path, query or [], sent, body, "198.51.100.7", "127.0.0.1:3000")
    return gateway.handle(STAGE, request)


def body(result: GatewayResult) -> Any:
    return json.loads(result.body)


def test_a_served_request_passes_the_key_and_request_to_the_function(emulated: Emulated) -> None:
    # Given a key in a plan for the stage
    key = emulated.key_in(emulated.plan())
    gateway = emulated.gateway()

    # When a key route with a path parameter and a repeated query parameter is called
    result = call(gateway, "/v1/things/a%20b", key["value"], query=[("tag", "x"), ("tag", "y")])

    # Then the function got API Gateway's proxy event, and its answer came back as it gave it
    assert result.status == HTTPStatus.OK
    event = body(result)
    context = event["requestContext"]
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/v1/things/{thing_id}", "/v1/things/a b", "GET")
    assert event["pathParameters"] == {"thing_id": "a b"}
    assert event["queryStringParameters"] == {"tag": "y"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["x", "y"]}
    assert event["multiValueHeaders"]["X-API-Key"] == [key["value"]]
    assert (event["body"], event["isBase64Encoded"]) == (None, False)
    identity = {name: context["identity"][name] for name in ("apiKey", "apiKeyId", "sourceIp")}
    assert identity == {"apiKey": key["value"], "apiKeyId": key["id"], "sourceIp": "198.51.100.7"}
    assert (context["stage"], context["resourcePath"], context["apiId"]) == (
        STAGE,
        "/v1/things/{thing_id}",
        emulated.rest_api_id,
    )
    assert context["path"] == "/live/v1/things/a b"
    headers = dict(result.headers)
    assert headers["x-amzn-RequestId"] == context["requestId"]
    assert headers["X-Function"] == "test-Echo"
    assert [value for name, value in result.headers if name == "Set-Cookie"] == ["a=1", "b=2"]


def test_a_binary_body_reaches_the_function_base64_encoded(emulated: Emulated) -> None:
    # Given a public route and a body of a binary media type
    gateway = emulated.gateway()
    png = b"\x89PNG\r\n\x1a\n\x00\xff"

    # When it is posted (the route's model does not apply to image/png)
    result = call(gateway, "/open", method="POST", body=png, headers=[("Content-Type", "image/png")])

    # Then the function gets it base64-encoded and flagged
    event = body(result)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == png


@pytest.mark.parametrize("case", ["missing", "unknown", "disabled", "other_stage"])
def test_a_key_route_refuses_what_api_gateway_refuses(emulated: Emulated, case: str) -> None:
    # Given no key, an unknown key, a disabled key, or a key whose plan is for another stage
    api_key = {
        "missing": None,
        "unknown": "k" * 40,
        "disabled": emulated.key_in(emulated.plan(), enabled=False)["value"],
        "other_stage": emulated.key_in(emulated.plan(stage="other"))["value"],
    }[case]
    gateway = emulated.gateway()

    # When the key route is called
    result = call(gateway, "/v1/things", api_key)

    # Then 403 with API Gateway's exact body, and nothing counted
    assert (result.status, body(result)) == (HTTPStatus.FORBIDDEN, FORBIDDEN)
    assert result.error_type == "INVALID_API_KEY"


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/v1/things"), ("GET", "/v1/things/a/b")])
def test_no_route_is_missing_authentication_token(emulated: Emulated, method: str, path: str) -> None:
    # Given a path or method the API does not declare
    # When it is called
    result = call(emulated.gateway(), path, method=method)

    # Then API Gateway's answer for it
    assert (result.status, body(result)) == (HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"})


def test_the_plan_throttle_is_a_token_bucket(emulated: Emulated) -> None:
    # Given a key on a plan of 2 requests/s with a burst of 3
    plan_id = emulated.plan(rate=2, burst=3)
    key = emulated.key_in(plan_id)
    gateway = emulated.gateway()

    def statuses(n: int) -> list[int]:
        return [call(gateway, "/v1/things", key["value"]).status for _ in range(n)]

    # Then the burst passes at once and the next is throttled with API Gateway's body
    assert statuses(4) == [OK, OK, OK, TOO_MANY]
    assert body(call(gateway, "/v1/things", key["value"])) == {"message": "Too Many Requests"}
    # And tokens come back at the rate: 0.5 s gives one
    emulated.clocks.advance(0.5)
    assert statuses(2) == [OK, TOO_MANY]
    # And an idle bucket holds no more than the burst
    emulated.clocks.advance(60)
    assert statuses(4) == [OK, OK, OK, TOO_MANY]
    # And only served requests are usage
    assert emulated.used_today(plan_id, key["id"]) == 7


def test_a_method_throttle_in_the_plan_replaces_the_plan_throttle_for_that_method(emulated: Emulated) -> None:
    # Given a plan of burst 1, with GET /v1/things/{thing_id} allowed a burst of 3
    plan_id = emulated.plan(
        rate=1, burst=1, method_throttles={"/v1/things/{thing_id}/GET": {"rateLimit": 1, "burstLimit": 3}}
    )
    key = emulated.key_in(plan_id)["value"]
    gateway = emulated.gateway()

    # When both methods are called in a burst
    item = [call(gateway, "/v1/things/1", key).status for _ in range(4)]
    listing = [call(gateway, "/v1/things", key).status for _ in range(2)]

    # Then each has its own bucket and limits
    assert item == [OK, OK, OK, TOO_MANY]
    assert listing == [OK, TOO_MANY]


def test_a_stage_method_throttle_counts_every_caller_together(emulated: Emulated) -> None:
    # Given a stage method setting of 1 request/s, burst 2, on the public POST /open
    emulated.method_throttles = {("/open", "POST"): Throttle(rate=1, burst=2)}
    gateway = emulated.gateway()
    valid = json.dumps({"name": "x"}).encode()

    # When three callers post at once
    results = [call(gateway, "/open", method="POST", body=valid, headers=[("X-Caller", str(n))]) for n in range(3)]

    # Then the third is throttled, whoever it is
    assert [result.status for result in results] == [OK, OK, TOO_MANY]


def test_the_quota_refuses_with_limit_exceeded_until_the_period_resets(emulated: Emulated) -> None:
    # Given a key on a plan of 2 requests a DAY, at 23:59 UTC
    plan_id = emulated.plan(quota={"limit": 2, "period": "DAY"})
    key = emulated.key_in(plan_id)
    gateway = emulated.gateway()
    emulated.clocks.wall = datetime(2026, 3, 10, 23, 59, tzinfo=UTC)

    # When it calls three times
    results = [call(gateway, "/v1/things", key["value"]) for _ in range(3)]

    # Then the third is refused with API Gateway's body, and usage holds exactly the two served
    assert [result.status for result in results] == [OK, OK, TOO_MANY]
    assert body(results[2]) == {"message": "Limit Exceeded"}
    assert emulated.used_today(plan_id, key["id"]) == 2
    # And at the UTC day boundary the quota is whole again
    emulated.clocks.advance(60)
    assert call(gateway, "/v1/things", key["value"]).status == HTTPStatus.OK


def test_a_week_quota_resets_on_monday_utc_as_core_periods_says(emulated: Emulated) -> None:
    # Given a key on a plan of 1 request a WEEK, used up on Sunday 23:59 UTC
    key = emulated.key_in(emulated.plan(quota={"limit": 1, "period": "WEEK"}))["value"]
    gateway = emulated.gateway()
    emulated.clocks.wall = datetime(2026, 3, 15, 23, 59, tzinfo=UTC)  # a Sunday
    assert [call(gateway, "/v1/things", key).status for _ in range(2)] == [OK, TOO_MANY]

    # When Monday 00:00 UTC comes
    emulated.clocks.advance(60)

    # Then the new week has its quota (the boundary core.periods chose, shared with the monitor)
    assert call(gateway, "/v1/things", key).status == HTTPStatus.OK


def test_a_body_that_fails_the_route_model_is_refused_before_the_function(emulated: Emulated) -> None:
    # Given a public route whose event has a RequestModel with ValidateBody
    gateway = emulated.gateway()

    # When it gets bodies that fail the model, and one that passes
    missing_name = call(gateway, "/open", method="POST", body=b"{}", headers=[("Content-Type", "application/json")])
    not_json = call(gateway, "/open", method="POST", body=b"{", headers=[("Content-Type", "application/json")])
    valid = call(gateway, "/open", method="POST", body=b'{"name":"x"}', headers=[("Content-Type", "application/json")])

    # Then API Gateway's 400 for the first two, and the function for the last
    for refused in (missing_name, not_json):
        assert (refused.status, body(refused)) == (HTTPStatus.BAD_REQUEST, {"message": "Invalid request body"})
    assert valid.status == HTTPStatus.OK


@pytest.mark.parametrize("path", ["/fail", "/malformed"])
def test_a_failing_function_is_a_502_from_the_gateway(emulated: Emulated, path: str) -> None:
    # Given a function that raises, or returns something that is not a proxy response
    # When its route is called
    result = call(emulated.gateway(), path)

    # Then API Gateway answers 502 with its own body, and the console learns why
    assert (result.status, body(result)) == (HTTPStatus.BAD_GATEWAY, {"message": "Internal server error"})
    assert result.detail is not None
    assert result.detail.startswith(
        {"/fail": "RuntimeError: the function failed", "/malformed": "Malformed Lambda proxy response"}[path]
    )


def test_a_function_past_its_timeout_is_a_502_at_the_timeout(emulated: Emulated) -> None:
    # Given a function with a 1 s timeout, warm
    gateway = emulated.gateway()
    assert call(gateway, "/sleep", method="POST", body=b'{"seconds": 0}').status == HTTPStatus.OK

    # When its route is called with work for 10 s
    began = time.monotonic()
    result = call(gateway, "/sleep", method="POST", body=b'{"seconds": 10}')

    # Then API Gateway's answer for a function error comes at the timeout: Lambda stopped the function
    assert time.monotonic() - began < 3.0
    assert (result.status, body(result)) == (HTTPStatus.BAD_GATEWAY, {"message": "Internal server error"})
    assert result.detail is not None
    assert result.detail.startswith("Sandbox.Timedout: Task timed out after 1.00 seconds")


def test_a_throttled_function_is_a_500_from_the_gateway(emulated: Emulated) -> None:
    # Given a function with a reserved concurrency of 1, busy with a call
    gateway = emulated.gateway()
    work = {"method": "POST", "body": b'{"seconds": 2}'}
    busy = threading.Thread(target=call, args=(gateway, "/single"), kwargs=work)
    busy.start()
    time.sleep(0.5)

    # When another request reaches it
    result = call(gateway, "/single", method="POST", body=b"{}")
    busy.join()

    # Then Lambda throttled it, and API Gateway answers a proxy integration's throttle with a 500
    assert (result.status, body(result)) == (HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal server error"})
    assert result.detail is not None
    assert "TooManyRequestsException" in result.detail


@pytest.fixture
def served(emulated: Emulated) -> Iterator[GatewayServer]:
    """The gateway behind a real socket on a free port."""
    server = GatewayServer(("127.0.0.1", 0), emulated.gateway(), access_log=False)
    server.start()
    yield server
    server.stop()


def exchange(port: int, raw: bytes) -> tuple[int, Any]:
    """Send raw bytes, read one HTTP answer (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(raw)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "5, 7"])
def test_a_malformed_content_length_gets_400_not_a_dropped_connection(served: GatewayServer, length: str) -> None:
    raw = f"POST /{STAGE}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
    assert exchange(served.port, raw) == (HTTPStatus.BAD_REQUEST, {"message": "Bad Request"})


def test_a_body_over_api_gateway_s_10_mb_gets_413(served: GatewayServer) -> None:
    # The client declares the size and waits for the answer before sending the body, as `Expect` clients do
    raw = f"POST /{STAGE}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024 * 1024 + 1}\r\n\r\n".encode()
    assert exchange(served.port, raw) == (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Too Long"})


def test_json_nested_100_000_deep_gets_an_answer(served: GatewayServer) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    head = "POST /{}/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"

    # A route with a request model: the validator refuses it, as a body that is not valid JSON for the model
    raw = head.format(STAGE, "open", len(deep)).encode() + deep
    assert exchange(served.port, raw) == (HTTPStatus.BAD_REQUEST, {"message": "Invalid request body"})
    # A route without one: API Gateway does not parse the body; the function gets it as it was sent
    status, echoed = exchange(served.port, head.format(STAGE, "echo", len(deep)).encode() + deep)
    assert (status, len(echoed["body"])) == (HTTPStatus.OK, len(deep))


def test_a_hundred_simultaneous_connects_are_all_accepted(emulated: Emulated) -> None:
    # Given a gateway that is not accepting yet (as when it is busy), so every connect waits in the backlog
    server = GatewayServer(("127.0.0.1", 0), emulated.gateway(), access_log=False)
    connections = []
    try:
        # When a hundred clients connect at once
        for _ in range(100):
            connections.append(socket.create_connection(("127.0.0.1", server.port), timeout=1))

        # Then every connection is queued, none refused or reset, and each is answered once it serves
        server.start()
        for connection in connections:
            connection.sendall(f"GET /{STAGE}/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        for connection in connections:
            response = http.client.HTTPResponse(connection)
            response.begin()
            assert response.status == HTTPStatus.FORBIDDEN
            response.read()
    finally:
        for connection in connections:
            connection.close()
        server.stop()
