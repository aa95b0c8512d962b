"""Lambda Web Adapter functions behind the local API Gateway over a real socket: a toy ASGI app
(tests/offline/web_app) streams through a RESPONSE_STREAM route as it produces, sees what the adapter sends,
is stopped at its timeout, and sees a client that goes away; buffered routes are as before."""

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline import apigateway_fidelity
from offline.api_keys import HeaderKeySource, KeyRegistry
from offline.functions import FunctionRuntime, FunctionSpec
from offline.gateway import ApiStage, LocalGateway
from offline.gateway_responses import GatewayResponses
from offline.routes import Route, RouteTable
from offline.server import GatewayServer
from offline.template import ACCOUNT_ID, PROJECT_ROOT

REGION = "us-east-1"
STAGE = "live"
WEB_APP = PROJECT_ROOT / "tests" / "offline" / "web_app"
INTERNAL_ERROR = {"message": "Internal server error"}


def web_app_spec(name: str, events: Path, timeout: int = 5, reserved: int | None = None) -> FunctionSpec:
    """The toy app as the template declares an LWA function (its exec wrapper, mode, port, readiness path)."""
    environment = {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
        "TOY_APP_EVENTS": str(events),
    }
    return FunctionSpec(
        name, f"test-{name}", "run.sh", WEB_APP, timeout, 256, REGION, environment, reserved_concurrency=reserved,
        web_adapter=True,
    )  # fmt: skip


ROUTES = [
    Route("POST", "/v1/stream", "Stream", "Api", api_key_required=True, streaming=True),
    Route("POST", "/v1/echo", "Stream", "Api", api_key_required=True, streaming=True),
    Route("POST", "/v1/exit", "Stream", "Api", api_key_required=True, streaming=True),
    Route("POST", "/v1/sleep", "Short", "Api", api_key_required=True, streaming=True),
    Route("POST", "/buffered", "Echo", "Api", api_key_required=False),
]


@dataclass
class Served:
    port: int
    api_key: str
    api_key_id: str
    plan_id: str
    events: Path
    runtime: FunctionRuntime

    def notes(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def post(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = self.connection()
        connection.request("POST", f"/{STAGE}{path}", body, {"x-api-key": self.api_key, **(headers or {})})
        return connection.getresponse()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    apigateway_fidelity.install()
    apigateway_fidelity.set_management_rate_limits(False)
    events = tmp_path / "events.jsonl"
    specs = {
        "Stream": web_app_spec("Stream", events),
        "Short": web_app_spec("Short", events, timeout=2),
        "Single": web_app_spec("Single", events, reserved=1),
        "Echo": FunctionSpec("Echo", "test-Echo", "tests.offline_functions.echo", PROJECT_ROOT, 3, 128, REGION),
    }
    try:
        with mock_aws(), FunctionRuntime(specs, {}) as runtime:
            runtime.load()
            apigateway = boto3.client("apigateway", region_name=REGION)
            rest_api_id = apigateway.create_rest_api(name="api")["id"]
            plan = apigateway.create_usage_plan(name="plan", apiStages=[{"apiId": rest_api_id, "stage": STAGE}])
            key = apigateway.create_api_key(name="partner", enabled=True)
            apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
            stage = ApiStage(
                "Api", rest_api_id, STAGE, RouteTable(ROUTES), GatewayResponses(), HeaderKeySource()
            )  # fmt: skip
            ledger = apigateway_fidelity.ledger(ACCOUNT_ID, REGION)
            gateway = LocalGateway([stage], runtime, KeyRegistry(REGION), ledger)
            server = GatewayServer(("127.0.0.1", 0), gateway, access_log=False)
            server.start()
            try:
                yield Served(server.port, key["value"], key["id"], plan["id"], events, runtime)
            finally:
                server.stop()
    finally:
        apigateway_fidelity.set_management_rate_limits(None)


def read_events(response: http.client.HTTPResponse) -> list[tuple[float, bytes]]:
    """Each server-sent event with the moment it arrived."""
    received = []
    while line := response.readline():
        if line.strip():
            received.append((time.monotonic(), line.strip()))
    return received


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_a_streaming_route_passes_chunks_on_as_the_app_produces_them(served: Served) -> None:
    # Given a streaming route whose app sends 4 events 0.3 s apart
    began = time.monotonic()

    # When a client posts to it
    response = served.post("/v1/stream?chunks=4&delay=0.3")
    events = read_events(response)

    # Then the app's status and headers arrive first, with chunked transfer and no length
    assert response.status == HTTPStatus.OK
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("x-amzn-RequestId")
    # And each event as it was produced: the first long before the last, not one buffered body
    assert [line for _, line in events] == [b"data: 0", b"data: 1", b"data: 2", b"data: 3", b"data: [DONE]"]
    first, last = events[0][0], events[-1][0]
    assert last - first >= 0.8
    assert first - began < last - began - 0.8
    assert wait_for(lambda: [note["outcome"] for note in served.notes()] == ["completed"])


def test_the_app_gets_the_request_and_lwa_s_context_headers_with_the_key_the_gateway_saw(served: Served) -> None:
    # Given a client that also tries to forge the context headers the app trusts
    forged = json.dumps({"identity": {"apiKeyId": "someone-else"}})

    # When it calls the echo route with a query, a repeated parameter and a body
    connection = served.connection()
    connection.request(
        "POST",
        f"/{STAGE}/v1/echo?tag=a&tag=b%20c",
        b'{"hello": "world"}',
        {"x-api-key": served.api_key, "x-amzn-request-context": forged, "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    echo = json.loads(response.read())

    # Then the app got the path without the stage, the query form-encoded, the body, lower-case headers
    assert response.status == HTTPStatus.OK
    assert (echo["method"], echo["path"], echo["query_string"]) == ("POST", "/v1/echo", "tag=a&tag=b+c")
    assert json.loads(base64.b64decode(echo["body"])) == {"hello": "world"}
    assert echo["headers"]["content-type"] == ["application/json"]
    # And one request context, the gateway's: the caller's key id and the request id the client got back
    (context_header,) = echo["headers"]["x-amzn-request-context"]
    context = json.loads(context_header)
    assert context["identity"]["apiKeyId"] == served.api_key_id
    assert context["requestId"] == response.getheader("x-amzn-RequestId")
    assert (context["stage"], context["resourcePath"], context["httpMethod"]) == (STAGE, "/v1/echo", "POST")
    # And Lambda's context, with the deadline in ms since the epoch (the function's 5 s timeout from now)
    (lambda_header,) = echo["headers"]["x-amzn-lambda-context"]
    lambda_context = json.loads(lambda_header)
    assert lambda_context["request_id"] == context["requestId"]
    assert 0 < lambda_context["deadline"] - time.time() * 1000 <= 5000
    assert lambda_context["invoked_function_arn"].endswith(":function:test-Stream")
    assert lambda_context["env_config"]["function_name"] == "test-Stream"
    # And it runs in its CodeUri
    assert Path(echo["cwd"]) == WEB_APP


def test_a_buffered_route_is_answered_as_before(served: Served) -> None:
    # When a route without ResponseTransferMode is called
    connection = served.connection()
    connection.request("POST", f"/{STAGE}/buffered", b"{}")
    response = connection.getresponse()
    body = response.read()

    # Then one answer with its length, not chunked
    assert response.status == HTTPStatus.OK
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Transfer-Encoding") is None


@pytest.mark.parametrize(("api_key", "status"), [(None, HTTPStatus.FORBIDDEN), ("k" * 40, HTTPStatus.FORBIDDEN)])
def test_the_key_check_applies_before_a_streaming_function(served: Served, api_key: str | None, status: int) -> None:
    # When a streaming key route is called without a valid key
    connection = served.connection()
    connection.request("POST", f"/{STAGE}/v1/stream", b"", {"x-api-key": api_key} if api_key else {})
    response = connection.getresponse()

    # Then API Gateway's own answer, buffered, and the app never ran
    assert (response.status, json.loads(response.read())) == (status, {"message": "Forbidden"})
    assert served.notes() == []


def test_a_stream_past_the_function_timeout_is_cut_and_its_environment_stopped(served: Served) -> None:
    # Given a function with a 2 s timeout whose app sends one event and then works for 10 s
    warm = served.post("/v1/sleep?seconds=0")
    app_pid = int(warm.getheader("x-app-pid") or 0)
    warm.read()
    began = time.monotonic()

    # When a client's request keeps it working for 10 s before its first byte
    connection = served.connection()
    connection.request("POST", f"/{STAGE}/v1/sleep?seconds=10", b"", {"x-api-key": served.api_key})
    response = connection.getresponse()

    # Then nothing was sent yet at the timeout: the client gets the answer for any timed-out function
    assert (response.status, json.loads(response.read())) == (HTTPStatus.BAD_GATEWAY, INTERNAL_ERROR)
    assert 2.0 <= time.monotonic() - began < 4.0
    # And the environment (worker and app) is gone, and the next call gets a new one
    assert wait_for(lambda: not running(app_pid))
    again = served.post("/v1/sleep?seconds=0")
    assert again.status == HTTPStatus.OK
    assert int(again.getheader("x-app-pid") or 0) != app_pid


def test_a_stream_cut_by_the_timeout_after_the_first_byte_ends_short(served: Served) -> None:
    # Given the 2 s function's app streaming one event, then holding for 10 s (its stream route)
    route = Route("POST", "/v1/stream", "Short", "Api", api_key_required=True, streaming=True)
    served_short = _gateway_for(served, [route])
    began = time.monotonic()

    # When a client reads it
    connection = http.client.HTTPConnection("127.0.0.1", served_short.port, timeout=30)
    connection.request("POST", f"/{STAGE}/v1/stream?chunks=1&hold=10", b"", {"x-api-key": served.api_key})
    response = connection.getresponse()

    # Then the status and the first event came, and at the timeout the stream stops without its end
    assert response.status == HTTPStatus.OK
    assert response.readline() == b"data: 0\n"
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    assert 2.0 <= time.monotonic() - began < 4.0
    served_short.stop()


def _gateway_for(served: Served, routes: list[Route]) -> GatewayServer:
    """Another stage in front of the same functions, with other routes."""
    apigateway = boto3.client("apigateway", region_name=REGION)
    rest_api_id = apigateway.get_rest_apis()["items"][0]["id"]
    stage = ApiStage("Api", rest_api_id, STAGE, RouteTable(routes), GatewayResponses(), HeaderKeySource())
    gateway = LocalGateway([stage], served.runtime, KeyRegistry(REGION), apigateway_fidelity.ledger(ACCOUNT_ID, REGION))
    server = GatewayServer(("127.0.0.1", 0), gateway, access_log=False)
    server.start()
    return server


def test_a_client_that_disconnects_mid_stream_is_seen_by_the_app_and_the_environment_is_reused(
    served: Served,
) -> None:
    # Given a stream of 50 events 0.1 s apart
    raw = (
        f"POST /{STAGE}/v1/stream?chunks=50&delay=0.1 HTTP/1.1\r\nHost: x\r\nx-api-key: {served.api_key}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    client = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    client.sendall(raw)

    # When the client reads the first event and goes away
    received = b""
    while b"data: 0" not in received:
        received += client.recv(4096)
    began = time.monotonic()
    client.close()

    # Then the app sees the disconnect (ASGI http.disconnect) within a few seconds, long before its 5 s of events
    assert wait_for(lambda: any(note["outcome"] == "disconnected" for note in served.notes()), seconds=4)
    assert time.monotonic() - began < 4
    app_pid = served.notes()[0]["pid"]
    # And the same environment serves the next call
    response = served.post("/v1/stream?chunks=2")
    assert response.status == HTTPStatus.OK
    assert [line for _, line in read_events(response)] == [b"data: 0", b"data: 1", b"data: [DONE]"]
    assert int(response.getheader("x-app-pid") or 0) == app_pid


def test_two_concurrent_streams_run_in_two_environments(served: Served) -> None:
    # Given two clients streaming at the same time, 5 events 0.2 s apart each
    results: list[tuple[int, list[tuple[float, bytes]]]] = []
    ready = threading.Barrier(2)

    def stream() -> None:
        ready.wait()
        response = served.post("/v1/stream?chunks=5&delay=0.2")
        results.append((int(response.getheader("x-app-pid") or 0), read_events(response)))

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then each got its whole stream, from an app of its own, and both streamed at the same time
    assert len(results) == 2
    (pid_a, events_a), (pid_b, events_b) = results
    assert pid_a != pid_b
    for events in (events_a, events_b):
        assert [line for _, line in events][-1] == b"data: [DONE]"
    assert events_a[0][0] < events_b[-1][0] and events_b[0][0] < events_a[-1][0]


def test_reserved_concurrency_throttles_a_second_stream(served: Served) -> None:
    # Given a function with a reserved concurrency of 1, busy with a stream
    route = Route("POST", "/v1/stream", "Single", "Api", api_key_required=True, streaming=True)
    server = _gateway_for(served, [route])
    first = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    first.request("POST", f"/{STAGE}/v1/stream?chunks=10&delay=0.2", b"", {"x-api-key": served.api_key})
    holding = first.getresponse()
    assert holding.readline() == b"data: 0\n"

    # When another stream reaches it
    second = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    second.request("POST", f"/{STAGE}/v1/stream", b"", {"x-api-key": served.api_key})
    throttled = second.getresponse()

    # Then Lambda throttles it, and API Gateway answers 500 as for any throttled proxy integration
    assert (throttled.status, json.loads(throttled.read())) == (HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR)
    holding.read()
    server.stop()


def test_an_app_that_exits_gets_the_usual_502_and_a_new_environment(served: Served) -> None:
    # Given a warm environment
    warm = served.post("/v1/stream?chunks=1")
    app_pid = int(warm.getheader("x-app-pid") or 0)
    warm.read()

    # When a request makes the app process exit
    crashed = served.post("/v1/exit")

    # Then API Gateway's answer for a failed function
    assert (crashed.status, json.loads(crashed.read())) == (HTTPStatus.BAD_GATEWAY, INTERNAL_ERROR)
    # And the next request runs in a new environment
    again = served.post("/v1/stream?chunks=1")
    assert again.status == HTTPStatus.OK
    assert int(again.getheader("x-app-pid") or 0) not in (0, app_pid)
    again.read()


def test_an_app_that_exits_mid_stream_cuts_the_stream(served: Served) -> None:
    # When the app exits after its first event
    response = served.post("/v1/stream?chunks=5&delay=0.5&exit_after=0")

    # Then the client got the status and that event, and then the stream ends short
    assert response.status == HTTPStatus.OK
    app_pid = int(response.getheader("x-app-pid") or 0)
    assert response.readline() == b"data: 0\n"
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    # And the next request gets a new environment
    again = served.post("/v1/stream?chunks=1")
    assert again.status == HTTPStatus.OK
    assert int(again.getheader("x-app-pid") or 0) not in (0, app_pid)
    again.read()


def test_a_streamed_request_counts_as_usage_like_any_other(served: Served) -> None:
    # When a key streams twice
    for _ in range(2):
        served.post("/v1/stream?chunks=1").read()

    # Then its plan counts two requests today
    apigateway = boto3.client("apigateway", region_name=REGION)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    usage = apigateway.get_usage(usagePlanId=served.plan_id, keyId=served.api_key_id, startDate=today, endDate=today)
    assert usage["items"][served.api_key_id][0][0] == 2


def test_hostile_input_on_a_streaming_route_is_answered(served: Served) -> None:
    # A 40 KB header reaches the app intact; one over the gateway's 64 KB line limit is refused before it
    big_header = served.post("/v1/echo", headers={"x-big": "a" * 40_000})
    assert big_header.status == HTTPStatus.OK
    assert json.loads(big_header.read())["headers"]["x-big"] == ["a" * 40_000]
    too_big = served.post("/v1/echo", headers={"x-big": "a" * 70_000})
    assert too_big.status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    # A body of 2 MB of non-UTF-8 bytes reaches the app intact
    body = bytes(range(256)) * 8192
    echoed = served.post("/v1/echo", body=body, headers={"Content-Type": "application/octet-stream"})
    assert echoed.status == HTTPStatus.OK
    assert base64.b64decode(json.loads(echoed.read())["body"]) == body
    # A body over API Gateway's 10 MB: the gateway's 413, before any function
    raw = f"POST /{STAGE}/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024 * 1024 + 1}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as connection:
        connection.sendall(raw)
        response = http.client.HTTPResponse(connection)
        response.begin()
        assert response.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_closing_the_runtime_leaves_no_web_app_running(served: Served) -> None:
    # Given a warm environment
    response = served.post("/v1/stream?chunks=1")
    app_pid = int(response.getheader("x-app-pid") or 0)
    response.read()

    # When the runtime closes (the stack stops)
    served.runtime.close()

    # Then its web app is gone too
    assert wait_for(lambda: not running(app_pid))


def test_an_http_1_0_client_gets_the_stream_unchunked_until_the_connection_closes(served: Served) -> None:
    # When a client that knows no chunked transfer streams
    raw = (
        f"POST /{STAGE}/v1/stream?chunks=2 HTTP/1.0\r\nHost: x\r\nx-api-key: {served.api_key}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as connection:
        connection.sendall(raw)
        received = b""
        while data := connection.recv(4096):
            received += data

    # Then the events as they are, ended by the connection's end
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"data: 0\n\ndata: 1\n\ndata: [DONE]\n\n"
