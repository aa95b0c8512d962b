"""The offline stack reads template.yaml through SAM CLI: overrides, conditions, and routes and tiers that
appear locally as soon as the template declares them."""

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from offline import apigateway_fidelity
from offline.provision import provision
from offline.routes import declared_apis, declared_routes
from offline.template import TEMPLATE_PATH, TemplateError, load_template, parse_parameter_overrides


def test_overrides_take_both_forms_sam_deploy_takes() -> None:
    assert parse_parameter_overrides('FreeQuotaLimit=20 FreeRateLimit=2 Models="a,b c"') == {
        "FreeQuotaLimit": "20",
        "FreeRateLimit": "2",
        "Models": "a,b c",
    }
    assert parse_parameter_overrides("ParameterKey=FreeQuotaLimit,ParameterValue=20") == {"FreeQuotaLimit": "20"}
    assert parse_parameter_overrides("") == {}


@pytest.mark.parametrize("text", ["FreeQuotaLimit", "=3", 'Unclosed="quote'])
def test_overrides_that_are_not_name_value_pairs_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_parameter_overrides(text)


def test_overrides_apply_and_values_resolve_into_the_plans() -> None:
    # Given a smaller free tier
    template = load_template(overrides={"FreeQuotaLimit": "20", "FreeRateLimit": "2"})

    # Then the plan carries it, with the stack's naming rule for tiers
    plan = template.of_type("AWS::ApiGateway::UsagePlan")["FreeUsagePlan"]
    assert plan["UsagePlanName"] == "metered-ai-local-free"
    assert (plan["Quota"]["Limit"], plan["Throttle"]["RateLimit"]) == ("20", "2")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Nope": "1"}, "unknown template parameter"),
        ({"FreeQuotaLimit": "many"}, "is not a number"),
        ({"FreeQuotaLimit": "0"}, "below its MinValue"),
        ({"FreeQuotaPeriod": "YEAR"}, "is not one of"),
        ({"SelfServiceTiers": "Free"}, "does not match"),
        # A rule of the template's Rules: a method throttle's rate needs a burst.
        ({"ProChatCompletionsRateLimit": "2"}, "rule ProChatCompletionsThrottleHasBurst: ProChatCompletionsBurstLimit"),
        ({"DormantKeyDays": "30"}, "rule DormantKeySweepHasSender: DormantKeyDays needs PartnerAlertSender"),
        ({"DormantKeyDays": "91", "PartnerAlertSender": "a@example.com"}, "above its MaxValue"),
    ],
)
def test_overrides_the_template_forbids_are_refused(overrides: dict[str, str], reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        load_template(overrides=overrides)


def test_conditions_decide_which_resources_exist() -> None:
    # Given the template without and with an alert email
    without = load_template()
    with_email = load_template(overrides={"AlertEmail": "ops@example.com"})

    # Then the email subscription exists only when its condition holds, as CloudFormation decides
    assert "AlertEmailSubscription" not in without.resources
    assert "ApiGatewayLoggingRole" not in without.resources
    subscription = with_email.of_type("AWS::SNS::Subscription")["AlertEmailSubscription"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")


def test_a_plans_method_throttle_is_provisioned_only_where_its_condition_holds() -> None:
    # Given a pro tier whose chat completions are throttled at 2/s, burst 3, and a free tier left at 0
    template = load_template(overrides={"ProChatCompletionsRateLimit": "2", "ProChatCompletionsBurstLimit": "3"})

    # When the stack is provisioned on the emulator
    apigateway_fidelity.install()
    with mock_aws():
        provisioned = provision(template)
        plans = boto3.client("apigateway", region_name=template.region).get_usage_plans()["items"]

    # Then pro's API stage carries the method throttle, keyed as API Gateway keys it, and free's none
    stages = {plan["id"]: plan["apiStages"] for plan in plans}
    [pro] = stages[provisioned.plan_ids_by_tier["pro"]]
    [free] = stages[provisioned.plan_ids_by_tier["free"]]
    assert pro["throttle"] == {"/v1/chat/completions/POST": {"rateLimit": 2.0, "burstLimit": 3}}
    assert "throttle" not in free


def test_the_template_s_routes_are_served_with_their_key_rules() -> None:
    # Given the template
    template = load_template()

    # When its routes are read
    routes = {
        (route.method, route.resource_path): route for route in declared_routes(template, declared_apis(template))
    }

    # Then signup is public and validated against its model, and the models route needs a key
    assert not routes[("POST", "/signup")].api_key_required
    assert routes[("POST", "/signup")].request_schema is not None
    assert routes[("GET", "/v1/models")].api_key_required
    assert routes[("GET", "/v1/models")].function_id == "ModelsFunction"


def with_extra_resources(tmp_path: Path, extra: str) -> Path:
    """A copy of template.yaml with `extra` appended under Resources, its CodeUri made absolute."""
    head, outputs = TEMPLATE_PATH.read_text().split("\nOutputs:", 1)
    text = f"{head}\n{extra}\nOutputs:{outputs}".replace("CodeUri: src/", f"CodeUri: {TEMPLATE_PATH.parent / 'src'}")
    copy = tmp_path / "template.yaml"
    copy.write_text(text)
    return copy


def test_a_route_added_to_the_template_appears_with_no_other_change(tmp_path: Path) -> None:
    # Given the template plus one function with a GET /v1/echo/{word} event
    extra = """
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: handlers.models.handler
      Events:
        Echo:
          Type: Api
          Properties:
            RestApiId: !Ref MeteredApi
            Path: /v1/echo/{word}
            Method: get
"""
    template = load_template(with_extra_resources(tmp_path, extra))

    # When its routes are read
    routes = declared_routes(template, declared_apis(template))

    # Then the new route is there, metered like every route of the API (Auth.ApiKeyRequired)
    [echo] = [route for route in routes if route.function_id == "EchoFunction"]
    assert (echo.method, echo.resource_path, echo.api_key_required) == ("GET", "/v1/echo/{word}", True)


def test_a_tier_added_to_the_template_is_provisioned_with_no_other_change(tmp_path: Path) -> None:
    # Given the template plus a "team" usage plan named by the tier rule
    extra = """
  TeamUsagePlan:
    Type: AWS::ApiGateway::UsagePlan
    Properties:
      UsagePlanName: !Sub "${AWS::StackName}-team"
      ApiStages:
        - ApiId: !Ref MeteredApi
          Stage: !Ref MeteredApi.Stage
      Throttle:
        RateLimit: 20
        BurstLimit: 40
      Quota:
        Limit: 5000
        Period: WEEK
"""
    template = load_template(with_extra_resources(tmp_path, extra))

    # When the stack is provisioned on the emulator
    apigateway_fidelity.install()
    with mock_aws():
        provisioned = provision(template)

    # Then the tier exists next to the others
    assert set(provisioned.plan_ids_by_tier) == {"free", "pro", "enterprise", "team"}
