"""The offline Lambda Web Adapter's rules, without running an app: which template functions are LWA functions
and which routes stream, the HTTP request LWA makes of an API Gateway REST event, and the metadata a
streamed answer starts with."""

import base64
import json
import shutil
from pathlib import Path

import pytest

from offline.functions import FunctionRuntime, function_specs
from offline.gateway import stream_metadata
from offline.routes import declared_apis, declared_routes
from offline.template import PROJECT_ROOT, TemplateError, load_template
from offline.web_adapter import AdapterOptions, app_request, lambda_context, parse_statuses, request_context

WEB_APP = PROJECT_ROOT / "tests" / "offline" / "web_app"
LWA_LAYER = "arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerX86:26"
TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: live
  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code_uri}
      Handler: run.sh
      Runtime: python3.12
      Timeout: 120
      Layers: [{layers}]
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
          AWS_LWA_INVOKE_MODE: response_stream
          PORT: "8080"
          AWS_LWA_READINESS_CHECK_PATH: /healthz
      Events:
        Stream:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /v1/stream
            Method: post
            ResponseTransferMode: RESPONSE_STREAM
        Buffered:
          Type: Api
          Properties:
            RestApiId: !Ref Api
            Path: /v1/buffered
            Method: post
"""


def write_template(folder: Path, code_uri: Path = WEB_APP, layers: str = f"!Sub '{LWA_LAYER}'") -> Path:
    path = folder / "template.yaml"
    path.write_text(TEMPLATE.format(code_uri=code_uri, layers=layers))
    return path


def test_an_lwa_function_and_its_streaming_route_are_recognised_from_the_template(tmp_path: Path) -> None:
    # Given a template fragment with an LWA function, one streaming and one buffered route
    template = load_template(write_template(tmp_path))

    # When the offline stack reads it
    spec = function_specs(template)["StreamFunction"]
    routes = {route.resource_path: route for route in declared_routes(template, declared_apis(template))}

    # Then the function runs behind the adapter, its Handler checked as a script, and only one route streams
    assert (spec.web_adapter, spec.handler, spec.timeout_seconds) == (True, "run.sh", 120)
    FunctionRuntime({"StreamFunction": spec}, {}).load()
    assert routes["/v1/stream"].streaming is True
    assert routes["/v1/buffered"].streaming is False


def test_the_exec_wrapper_without_the_adapter_layer_stops_the_start(tmp_path: Path) -> None:
    # Given an LWA environment but no layer (on AWS, /opt/bootstrap would not exist)
    template = load_template(write_template(tmp_path, layers=""))

    # Then the start stops with the reason
    with pytest.raises(TemplateError, match="LambdaAdapterLayer"):
        function_specs(template)


def test_a_handler_that_is_not_an_executable_script_stops_the_start(tmp_path: Path) -> None:
    # Given an LWA function whose run.sh lost its executable bit
    code = tmp_path / "code"
    shutil.copytree(WEB_APP, code)
    (code / "run.sh").chmod(0o644)
    template = load_template(write_template(tmp_path, code_uri=code))

    # Then loading the functions refuses it
    with pytest.raises(TemplateError, match="not an executable file"):
        FunctionRuntime(function_specs(template), {}).load()


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "httpMethod": "POST",
        "path": "/v1/chat completions",
        "headers": {"Host": "api.example.com", "Accept": "b", "Content-Length": "3"},
        "multiValueHeaders": {"Host": ["api.example.com"], "Accept": ["a", "b"], "Content-Length": ["3"]},
        "queryStringParameters": {"tag": "y"},
        "multiValueQueryStringParameters": {"tag": ["x", "y z"]},
        "requestContext": {"requestId": "req-1", "stage": "live", "extendedRequestId": "ext"},
        "body": "abc",
        "isBase64Encoded": False,
    }
    base.update(overrides)
    return base


OPTIONS = AdapterOptions.from_environment({"PORT": "9000"})


def test_the_app_gets_the_path_without_the_stage_the_multi_value_query_and_the_last_header_value() -> None:
    # When LWA turns a REST event into the app's request
    method, target, headers, body = app_request(event(), OPTIONS, {"request_id": "req-1"})

    # Then as lambda_http builds it: the raw path encoded, the multi-value query form-encoded
    assert (method, target, body) == ("POST", "/v1/chat%20completions?tag=x&tag=y+z", b"abc")
    sent = dict(headers)
    # And a repeated header once, with its last value (HeaderMap::extend replaces), lower-case names
    assert [value for name, value in headers if name == "accept"] == [b"b"]
    assert sent["host"] == b"api.example.com"
    # And framing is the adapter's own: the client's Content-Length is not passed on
    assert "content-length" not in sent
    assert json.loads(sent["x-amzn-lambda-context"]) == {"request_id": "req-1"}


def test_a_base64_body_is_decoded_and_a_missing_host_is_the_app_s_address() -> None:
    binary = bytes(range(256))
    _, target, headers, body = app_request(
        event(
            body=base64.b64encode(binary).decode(),
            isBase64Encoded=True,
            headers=None,
            multiValueHeaders=None,
            multiValueQueryStringParameters=None,
            queryStringParameters=None,
        ),
        OPTIONS,
        {},
    )
    assert body == binary
    assert target == "/v1/chat%20completions"
    assert dict(headers)["host"] == b"127.0.0.1:9000"


def test_context_headers_from_the_client_are_replaced_by_the_adapter_s() -> None:
    # Given a client that sends its own request context
    forged = {"X-Amzn-Request-Context": '{"identity":{"apiKeyId":"forged"}}'}
    _, _, headers, _ = app_request(event(headers=forged, multiValueHeaders=None), OPTIONS, {})

    # Then the app gets exactly one, the event's
    contexts = [value for name, value in headers if name == "x-amzn-request-context"]
    assert len(contexts) == 1
    assert json.loads(contexts[0])["requestId"] == "req-1"


def test_the_request_context_is_re_serialized_with_lwa_s_fields() -> None:
    # When the event's requestContext goes through LWA (aws_lambda_events' ApiGatewayProxyRequestContext)
    shaped = request_context(
        {"requestId": "r", "identity": {"apiKeyId": "key-id", "vpcId": "v"}, "extendedRequestId": "e", "stage": "live"}
    )

    # Then its known fields in their order, absent ones null, unknown ones gone
    assert list(shaped)[:6] == ["accountId", "resourceId", "stage", "domainName", "domainPrefix", "requestId"]
    assert (shaped["requestId"], shaped["identity"]["apiKeyId"], shaped["requestTimeEpoch"]) == ("r", "key-id", 0)
    assert "extendedRequestId" not in shaped and "vpcId" not in shaped["identity"]
    assert "authorizer" not in shaped


def test_the_lambda_context_has_lambda_runtime_s_field_names() -> None:
    function = {"arn": "arn:aws:lambda:us-east-1:1:function:f", "function_name": "f", "memory_mb": 512}
    context = lambda_context(function, "req-1", 1_700_000_000.25)
    assert context["deadline"] == 1_700_000_000_250
    assert context["env_config"]["memory"] == 512
    assert set(context) == {
        "request_id",
        "deadline",
        "invoked_function_arn",
        "xray_trace_id",
        "client_context",
        "identity",
        "env_config",
    }


def test_adapter_options_follow_lwa_s_variables_and_defaults() -> None:
    defaults = AdapterOptions.from_environment({})
    assert (defaults.port, defaults.readiness_path, defaults.response_stream) == (8080, "/", False)
    assert defaults.healthy_statuses == frozenset(range(100, 500))
    custom = AdapterOptions.from_environment(
        {"AWS_LWA_PORT": "7000", "PORT": "8000", "AWS_LWA_INVOKE_MODE": "RESPONSE_STREAM"}
    )
    assert (custom.port, custom.readiness_port, custom.response_stream) == (7000, 7000, True)


@pytest.mark.parametrize(
    ("text", "statuses"),
    [("200-202,404", {200, 201, 202, 404}), ("500, 502-503", {500, 502, 503}), ("bad,200", {200}), ("", set())],
)
def test_healthy_statuses_are_read_as_lwa_reads_them(text: str, statuses: set[int]) -> None:
    assert parse_statuses(text) == statuses


def test_the_stream_metadata_gives_status_headers_and_cookies() -> None:
    prelude = json.dumps(
        {"statusCode": 201, "headers": {"content-type": "text/event-stream", "x-two": ["a", "b"]}, "cookies": ["c=1"]}
    ).encode()
    assert stream_metadata(prelude) == (
        201,
        [("content-type", "text/event-stream"), ("x-two", "a"), ("x-two", "b"), ("Set-Cookie", "c=1")],
    )


@pytest.mark.parametrize("prelude", [b"not json", b"[]", b'{"statusCode": 99}', b'{"statusCode": "200"}'])
def test_metadata_that_is_not_api_gateway_s_format_is_refused(prelude: bytes) -> None:
    with pytest.raises(ValueError, match=r"metadata|statusCode"):
        stream_metadata(prelude)
