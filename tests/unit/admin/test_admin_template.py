"""The operator console as CloudFormation will deploy it: IAM (SigV4) on every /admin route instead of the
API's key authorizer, no API key, invoked with the function's resource permission (not the caller's
credentials), and a role that can touch only what the console needs and never read a key's value."""

from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from offline.template import StackTemplate
from tests.unit.template.test_streaming_template import TEMPLATE, translated  # noqa: F401 - the fixture

ADMIN = "AdminFunction"


def admin_methods(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:  # noqa: F811
    paths = translated["Resources"]["MeteredApi"]["Properties"]["Body"]["paths"]
    return {
        f"{verb.upper()} {path}": method
        for path, methods in paths.items()
        if path.startswith("/admin")
        for verb, method in methods.items()
    }


def statements() -> list[dict[str, Any]]:
    """The admin role's statements as written (intrinsics unresolved): its inline policies and its own
    AWS::IAM::Policy resources."""
    resources = yaml_parse(TEMPLATE.read_text())["Resources"]
    found: list[dict[str, Any]] = []
    for policy in resources[ADMIN]["Properties"]["Policies"]:
        found += policy["Statement"]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": f"{ADMIN}Role"} in resource["Properties"]["Roles"]:
            found += resource["Properties"]["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_admin_route_is_signed_with_sigv4_and_needs_no_key(translated: dict[str, Any]) -> None:  # noqa: F811
    methods = admin_methods(translated)
    assert methods, "no /admin routes"
    for name, method in methods.items():
        # Then only IAM authorizes it (no key authorizer, no api_key security) ...
        assert method["security"] == [{"AWS_IAM": []}], name
        # ... and API Gateway invokes the function itself: no caller credentials in the integration
        assert "credentials" not in method["x-amazon-apigateway-integration"], name
    schemes = translated["Resources"]["MeteredApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_only_the_admin_function_serves_admin_routes(template: StackTemplate) -> None:
    for logical_id, function in template.of_type("AWS::Serverless::Function").items():
        for event in (function.get("Events") or {}).values():
            path = str(event.get("Properties", {}).get("Path", ""))
            if path.startswith("/admin"):
                assert logical_id == ADMIN, path
                assert event["Properties"]["Auth"] == {
                    "Authorizer": "AWS_IAM",
                    "InvokeRole": "NONE",
                    "ApiKeyRequired": False,
                }, path


@pytest.mark.parametrize("verb", ["apigateway:GET", "apigateway:*", "*"])
def test_the_admin_role_cannot_read_key_values(verb: str) -> None:
    # GetApiKeys / GetApiKey with includeValue(s) answer key values: no GET on /apikeys at all.
    for statement in statements():
        if verb in as_list(statement.get("Action", [])):
            for resource in as_list(statement["Resource"]):
                assert "/apikeys" not in str(resource), statement


def test_the_admin_role_touches_only_the_partners_metering_tables_and_the_topic() -> None:
    allowed = {
        str({"Fn::GetAtt": ["PartnersTable", "Arn"]}),
        str({"Fn::GetAtt": ["MeteringTable", "Arn"]}),
        str({"Ref": "AlertTopic"}),
    }
    for statement in statements():
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(action.endswith(":*") for action in actions), statement
        if any(action.startswith(("dynamodb:", "sns:")) for action in actions):
            assert {str(resource) for resource in as_list(statement["Resource"])} <= allowed, statement
