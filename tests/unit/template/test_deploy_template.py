"""What template.yaml must keep true for a first `sam deploy` in any account and Region (issue 10): a failed
first deploy leaves nothing behind, the default models resolve to the Region's inference profiles, every alarm on
a custom metric reads only its own stack's metric, and the public functions' capacity limits (issue 9)."""

from typing import Any

import pytest

from core.tier_policy import ModelCatalog
from offline.template import StackTemplate, load_template

STACK = "metered-ai-local"
CUSTOM_METRIC_NAMESPACE = "MeteredAI"


def chat_models(template: StackTemplate) -> dict[str, str]:
    variables = template.resources["ChatCompletionsFunction"]["Properties"]["Environment"]["Variables"]
    return {model.name: model.provider_model_id for model in ModelCatalog.parse(str(variables["MODELS"]))}


TITAN_EMBEDDINGS = {"titan-embed-text-v2": "amazon.titan-embed-text-v2:0"}


@pytest.mark.parametrize(
    ("region", "prefix", "embeddings"),
    [
        ("us-east-1", "us.", TITAN_EMBEDDINGS),
        ("us-west-2", "us.", TITAN_EMBEDDINGS),
        ("eu-west-1", "eu.", {}),
        ("eu-central-1", "eu.", TITAN_EMBEDDINGS),
        ("ap-northeast-1", "apac.", TITAN_EMBEDDINGS),
        ("ap-southeast-2", "apac.", TITAN_EMBEDDINGS),
    ],
)
def test_default_models_are_the_regions_cross_region_inference_profiles(
    region: str, prefix: str, embeddings: dict[str, str]
) -> None:
    # Given the template with its default Models, deployed in `region`
    template = load_template(region=region)

    # When the AI functions read their catalog
    models = chat_models(template)

    # Then every default chat model is the geography's inference profile (on-demand ids work in us-east-1 only),
    # and the embedding model, where the Region has one, its in-Region id (there is no profile for it)
    assert models == {
        "nova-micro": f"{prefix}amazon.nova-micro-v1:0",
        "nova-lite": f"{prefix}amazon.nova-lite-v1:0",
        "nova-pro": f"{prefix}amazon.nova-pro-v1:0",
        **embeddings,
    }
    for logical_id in ("ModelsFunction", "UsageFunction", "EmbeddingsFunction"):
        variables = template.resources[logical_id]["Properties"]["Environment"]["Variables"]
        assert (
            variables["MODELS"]
            == template.resources["ChatCompletionsFunction"]["Properties"]["Environment"]["Variables"]["MODELS"]
        )


def test_an_operators_models_replace_the_defaults_in_every_region() -> None:
    # Given an operator's own catalog
    template = load_template(region="eu-west-1", overrides={"Models": "mine=arn:aws:bedrock:eu-west-1:1:x/y"})

    # Then the functions serve exactly that
    assert chat_models(template) == {"mine": "arn:aws:bedrock:eu-west-1:1:x/y"}


def test_bedrock_policy_allows_profiles_of_every_kind_and_the_models_they_route_to() -> None:
    template = load_template(overrides={"ModelProvider": "bedrock"})

    statement = template.of_type("AWS::IAM::Policy")["ChatBedrockPolicy"]["PolicyDocument"]["Statement"][0]

    # Converse needs InvokeModel, ConverseStream (stream: true) InvokeModelWithResponseStream
    assert statement["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert set(statement["Resource"]) == {
        "arn:aws:bedrock:*::foundation-model/*",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/*",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/*",
    }


def test_a_failed_first_deploy_leaves_no_retained_resource(template: StackTemplate) -> None:
    # Given the resources the stack keeps when it is deleted
    kept = {
        logical_id: resource
        for logical_id, resource in template.resources.items()
        if str(resource.get("DeletionPolicy", "Delete")).startswith("Retain")
    }

    # Then each is kept only once it existed in a stack that was created: a rolled-back first create removes it
    assert {"PartnersTable", "ApiAccessLogGroup"} <= set(kept)
    for logical_id, resource in kept.items():
        assert resource["DeletionPolicy"] == "RetainExceptOnCreate", logical_id


def test_the_account_wide_logging_role_outlives_the_stack_that_created_it() -> None:
    # Given a stack that creates the Region's API Gateway CloudWatch role
    template = load_template(overrides={"CreateApiGatewayLoggingRole": "true"})

    # Then deleting the stack leaves the role and the account setting that every API in the Region relies on
    for logical_id in ("ApiGatewayLoggingRole", "ApiGatewayAccountSettings"):
        resource = template.resources[logical_id]
        assert resource["DeletionPolicy"] == "Retain", logical_id
        assert resource["UpdateReplacePolicy"] == "Retain", logical_id


def _metrics_read(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    if "MetricName" in alarm:
        return [{"Namespace": alarm.get("Namespace"), "Dimensions": alarm.get("Dimensions") or []}]
    return [query["MetricStat"]["Metric"] for query in alarm.get("Metrics") or [] if "MetricStat" in query]


def test_every_alarm_on_a_custom_metric_reads_only_its_own_stack(template: StackTemplate) -> None:
    # Given every alarm on a metric our functions publish
    custom = {
        logical_id: metric
        for logical_id, alarm in template.of_type("AWS::CloudWatch::Alarm").items()
        for metric in _metrics_read(alarm)
        if not str(metric["Namespace"]).startswith("AWS/")
    }
    assert custom, "no alarm on a custom metric: the test would pass on nothing"

    # Then each filters on this stack's `stack` dimension, so a second stack in the account cannot fire it
    for logical_id, metric in custom.items():
        dimensions = {dimension["Name"]: dimension["Value"] for dimension in metric["Dimensions"]}
        assert dimensions.get("stack") == STACK, logical_id


def test_functions_publish_the_stack_dimension_from_their_environment(template: StackTemplate) -> None:
    # The dimension's value comes from STACK_NAME, which every function has (Globals)
    for logical_id, function in template.of_type("AWS::Serverless::Function").items():
        assert function["Environment"]["Variables"]["STACK_NAME"] == STACK, logical_id


@pytest.mark.parametrize(
    ("overrides", "reserved"),
    [
        ({}, {"SignupFunction": 10, "TierWebhookFunction": 5}),
        ({"SignupReservedConcurrency": "3", "WebhookReservedConcurrency": "0"}, {"SignupFunction": 3}),
        ({"SignupReservedConcurrency": "0", "WebhookReservedConcurrency": "0"}, {}),
    ],
)
def test_public_functions_have_the_reserved_concurrency_asked_for(
    overrides: dict[str, str], reserved: dict[str, int]
) -> None:
    template = load_template(overrides=overrides)

    functions = template.of_type("AWS::Serverless::Function")
    for logical_id in ("SignupFunction", "TierWebhookFunction"):
        value = template.evaluated(functions[logical_id].get("ReservedConcurrentExecutions"))
        assert (int(value) if value is not None else None) == reserved.get(logical_id), logical_id


def test_no_web_acl_unless_a_signup_rate_is_set(template: StackTemplate) -> None:
    assert template.parameters["SignupWafRateLimitPer5Min"] == "0"
    assert not template.of_type("AWS::WAFv2::WebACL")
    assert not template.of_type("AWS::WAFv2::WebACLAssociation")


def test_web_acl_limits_each_source_ip_on_signup_only() -> None:
    # Given a signup rate per source IP
    template = load_template(overrides={"SignupWafRateLimitPer5Min": "100"})

    # Then one regional web ACL, allowing by default, with one rate rule per IP scoped to the /signup path
    (acl,) = template.of_type("AWS::WAFv2::WebACL").values()
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    assert rule["Action"] == {"Block": {}}
    rate = rule["Statement"]["RateBasedStatement"]
    assert int(rate["Limit"]) == 100
    assert rate["AggregateKeyType"] == "IP"
    match = rate["ScopeDownStatement"]["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"UriPath": {}}
    assert (match["SearchString"], match["PositionalConstraint"]) == ("/signup", "ENDS_WITH")
    # And it is associated with the API's stage
    (association,) = template.of_type("AWS::WAFv2::WebACLAssociation").values()
    # (SAM CLI's resolver leaves the stage's Ref unresolved: `make validate` checks the translated reference)
    assert association["ResourceArn"].startswith("arn:aws:apigateway:us-east-1::/restapis/MeteredApi/stages/")


def test_the_partners_table_expires_its_short_lived_link_items(template: StackTemplate) -> None:
    # Signup's confirmation and opt-in links (CONFIRM#, OPTIN#) are checked against `expires_at` on use; one never
    # opened would otherwise stay in the table for ever. Partner records and locks carry no `expires_at`.
    ttl = template.resources["PartnersTable"]["Properties"].get("TimeToLiveSpecification")

    assert ttl == {"AttributeName": "expires_at", "Enabled": True}
