"""The streaming chat route as CloudFormation will deploy it: template.yaml translated by the pinned
aws-sam-translator (as the SAM service translates it), because SAM's spelling decides whether API Gateway
streams at all (`STREAM` on the event is silently ignored and leaves a buffered integration)."""

import json
from pathlib import Path
from typing import Any

import pytest
import samtranslator
from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
CHAT_PATH = "/v1/chat/completions"


class BundledPolicies:
    """samtranslator's managed-policy names from its own bundled map, instead of asking IAM."""

    def load(self) -> dict[str, str]:
        policies = Path(samtranslator.__file__).parent / "internal" / "data" / "aws_managed_policies.json"
        loaded: dict[str, str] = json.loads(policies.read_text())
        return loaded


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    template = yaml_parse(TEMPLATE.read_text())
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://placeholder-bucket/{name}.zip"
    ArnGenerator.BOTO_SESSION_REGION_NAME = "us-east-1"
    result: dict[str, Any] = transform(template, {}, BundledPolicies())
    return result


def chat_method(translated: dict[str, Any]) -> dict[str, Any]:
    method: dict[str, Any] = translated["Resources"]["MeteredApi"]["Properties"]["Body"]["paths"][CHAT_PATH]["post"]
    return method


def test_the_chat_route_streams_lambdas_response(translated: dict[str, Any]) -> None:
    # When SAM translates the chat route's Api event
    integration = chat_method(translated)["x-amazon-apigateway-integration"]

    # Then API Gateway invokes the function with InvokeWithResponseStream and passes the stream on, for up to
    # the 15 minutes a stream may last
    uri = integration["uri"]["Fn::Sub"]
    assert uri.endswith("/2021-11-15/functions/${ChatCompletionsFunction.Arn}/response-streaming-invocations")
    assert integration["type"] == "aws_proxy"
    assert integration["responseTransferMode"] == "STREAM"
    assert integration["timeoutInMillis"] == 900_000


def test_the_streaming_route_still_needs_the_key_and_the_authorizer(translated: dict[str, Any]) -> None:
    # When SAM translates the chat route
    method = chat_method(translated)

    # Then the method keeps the request authorizer and the API key (usage plans throttle and cap it)
    assert {name for requirement in method["security"] for name in requirement} == {"ApiKeyAuthorizer", "api_key"}
    schemes = translated["Resources"]["MeteredApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    assert schemes["ApiKeyAuthorizer"]["x-amazon-apigateway-authtype"] == "custom"
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}


def test_the_other_ai_routes_stay_buffered(translated: dict[str, Any]) -> None:
    paths = translated["Resources"]["MeteredApi"]["Properties"]["Body"]["paths"]

    for path, function in (("/v1/models", "ModelsFunction"), ("/v1/usage", "UsageFunction")):
        integration = paths[path]["get"]["x-amazon-apigateway-integration"]
        assert "responseTransferMode" not in integration, path
        assert integration["uri"]["Fn::Sub"].endswith(f"/2015-03-31/functions/${{{function}.Arn}}/invocations"), path


def test_the_chat_function_runs_the_web_adapter_for_its_architecture(translated: dict[str, Any]) -> None:
    function = translated["Resources"]["ChatCompletionsFunction"]["Properties"]
    variables = function["Environment"]["Variables"]

    assert function["Handler"] == "run.sh"
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert variables["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    [layer] = function["Layers"]
    suffix = "LambdaAdapterLayerArm64" if function["Architectures"] == ["arm64"] else "LambdaAdapterLayerX86"
    assert f":753240598075:layer:{suffix}:" in json.dumps(layer)
    # Lambda's cap and API Gateway's stream cap are both 15 minutes
    assert function["Timeout"] == 900
