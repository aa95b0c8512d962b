"""The alarms an operator expects from template.yaml (aws-samples python-rest-sam's set): the API's 5XX, and
Errors and Throttles of every function that serves or authorizes a route, each notifying AlertTopic."""

from typing import Any

import pytest

from offline.template import StackTemplate, load_template

ALERT_TOPIC = "AlertTopic"


def alarms_on(template: StackTemplate, namespace: str, metric: str) -> dict[str, dict[str, Any]]:
    """The alarms on `metric`, by logical id."""
    return {
        logical_id: alarm
        for logical_id, alarm in template.of_type("AWS::CloudWatch::Alarm").items()
        if (alarm.get("Namespace"), alarm.get("MetricName")) == (namespace, metric)
    }


def dimensions(alarm: dict[str, Any]) -> dict[str, str]:
    return {dimension["Name"]: dimension["Value"] for dimension in alarm.get("Dimensions") or []}


def route_functions(template: StackTemplate) -> set[str]:
    """Every function with an Api event, and the API's authorizer functions (their ARNs end in the logical id)."""
    functions = template.of_type("AWS::Serverless::Function")
    served = {
        logical_id
        for logical_id, function in functions.items()
        if any(event["Type"] == "Api" for event in (function.get("Events") or {}).values())
    }
    authorizers = {
        str(authorizer["FunctionArn"]).rsplit(":function:", 1)[-1]
        for api in template.of_type("AWS::Serverless::Api").values()
        for authorizer in (api.get("Auth", {}).get("Authorizers") or {}).values()
    }
    return served | authorizers


def test_the_route_functions_are_signup_the_ai_api_the_billing_webhook_the_portal_and_the_console(
    template: StackTemplate,
) -> None:
    assert route_functions(template) == {
        "SignupFunction",
        "ApiKeyAuthorizerFunction",
        "ModelsFunction",
        "UsageFunction",
        "ChatCompletionsFunction",
        "EmbeddingsFunction",
        "TierWebhookFunction",
        "PortalFunction",
        "AdminFunction",
    }


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_route_function_has_an_alarm_on_its_errors_and_throttles(template: StackTemplate, metric: str) -> None:
    # Given the Lambda alarms on `metric`
    alarms = alarms_on(template, "AWS/Lambda", metric)
    watched = {dimensions(alarm).get("FunctionName"): alarm for alarm in alarms.values()}

    # Then each function behind a route has one, which fires on the first failed or throttled invocation
    for function in route_functions(template):
        assert function in watched, f"no {metric} alarm on {function}"
        alarm = watched[function]
        assert dimensions(alarm) == {"FunctionName": function}
        assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "Sum",
            "GreaterThanOrEqualToThreshold",
            1,
        ), function
        assert alarm["TreatMissingData"] == "notBreaching", function


@pytest.mark.parametrize("stage", ["live", "v1"])
def test_the_api_has_an_alarm_on_5xx_answers_of_its_stage(stage: str) -> None:
    # Given the stack deployed with a stage name
    template = load_template(overrides={"StageName": stage})

    # When its API Gateway alarms are read
    [alarm] = alarms_on(template, "AWS/ApiGateway", "5XXError").values()

    # Then one watches this API (SAM names it after the stack) on this stage
    assert dimensions(alarm) == {"ApiName": template.stack_name, "Stage": stage}
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Sum", "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_alert_topic(template: StackTemplate) -> None:
    alarms = template.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 13

    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [ALERT_TOPIC], logical_id
        assert set(alarm.get("OKActions") or [ALERT_TOPIC]) == {ALERT_TOPIC}, logical_id


def test_an_alarm_fires_at_80_percent_of_the_accounts_api_key_ceiling(template: StackTemplate) -> None:
    # Given the alarm on the quota monitor's count of the account's API keys
    alarm = template.of_type("AWS::CloudWatch::Alarm")["ApiKeysNearCeilingAlarm"]

    # Then it fires at 8,000 of API Gateway's 10,000 keys, on this stack's metric, to the alert topic
    assert (alarm["Namespace"], alarm["MetricName"]) == ("MeteredAI", "ApiKeysInAccount")
    assert dimensions(alarm) == {"service": "metered-ai", "stack": template.stack_name}
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Maximum", "GreaterThanOrEqualToThreshold")
    assert float(alarm["Threshold"]) == 8000
    assert alarm["AlarmActions"] == [ALERT_TOPIC]
