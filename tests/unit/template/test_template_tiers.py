"""Every tier appears in every place of template.yaml a tier must (README, "Add a tier"), and every parameter
is in exactly one console parameter group (`Metadata: AWS::CloudFormation::Interface`)."""

import copy
import json
import re
from collections import Counter
from typing import Any

import pytest
from samcli.yamlhelper import yaml_parse

from offline.template import TEMPLATE_PATH

Template = dict[str, Any]

# TIERS field -> the suffix of the tier parameter it is built from (`<Tier><suffix>`).
TIERS_FIELDS = {
    "models": "Models",
    "token_budget": "TokenBudget",
    "default_max_tokens": "DefaultMaxTokens",
    "rate_limit": "RateLimit",
    "burst_limit": "BurstLimit",
    "quota_limit": "QuotaLimit",
    "quota_period": "QuotaPeriod",
    "chat_completions_rate_limit": "ChatCompletionsRateLimit",
    "chat_completions_burst_limit": "ChatCompletionsBurstLimit",
}
# The plan's method throttle: its key is API Gateway's "/<resource path>/<METHOD>".
CHAT_COMPLETIONS_METHOD = "/v1/chat/completions/POST"
PLAN_NAME = re.compile(r"^\$\{AWS::StackName\}-(?P<tier>[a-z][a-z0-9]*)$")
PLACEHOLDER = re.compile(r'"?\$\{(\w+)\}"?')


def raw_template() -> Template:
    """template.yaml as written (intrinsics as {"Ref": ...}, {"Fn::Sub": ...}), before any resolution."""
    document: Template = yaml_parse(TEMPLATE_PATH.read_text())
    return document


def prefix(tier: str) -> str:
    return tier.capitalize()


def plan_tiers(template: Template) -> set[str]:
    return {
        match["tier"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::ApiGateway::UsagePlan"
        and (match := PLAN_NAME.match(str(resource["Properties"]["UsagePlanName"].get("Fn::Sub", ""))))
    }


def tiers_variable(template: Template) -> dict[str, dict[str, str]]:
    """TIERS (Globals) with each ${Parameter} kept as the string "${Parameter}"."""
    text = template["Globals"]["Function"]["Environment"]["Variables"]["TIERS"]["Fn::Sub"]
    tiers: dict[str, dict[str, str]] = json.loads(PLACEHOLDER.sub(r'"${\1}"', text))
    return tiers


def statements(document: Template) -> dict[str, Template]:
    return {statement["Sid"]: statement for statement in document["Statement"] if "Sid" in statement}


def names_plan(statement: Template, plan: str) -> bool:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return any(f"/usageplans/${{{plan}}}/" in str(resource.get("Fn::Sub", "")) for resource in resources)


def method_throttle(name: str) -> Template:
    """The ApiStages entry's Throttle a tier's plan must have: the chat completions method throttle, where set."""
    return {
        "Fn::If": [
            f"{name}ThrottlesChatCompletions",
            {
                CHAT_COMPLETIONS_METHOD: {
                    "RateLimit": {"Ref": f"{name}ChatCompletionsRateLimit"},
                    "BurstLimit": {"Ref": f"{name}ChatCompletionsBurstLimit"},
                }
            },
            {"Ref": "AWS::NoValue"},
        ]
    }


def missing_places(template: Template, tier: str) -> list[str]:
    """The places of README's "Add a tier" list where `tier` is missing or incomplete."""
    resources, name = template["Resources"], prefix(tier)
    plan_id = f"{name}UsagePlan"
    parameters = {f"{name}{suffix}" for suffix in TIERS_FIELDS.values()}
    missing = []

    plan = resources.get(plan_id, {}).get("Properties", {})
    if plan.get("UsagePlanName") != {"Fn::Sub": f"${{AWS::StackName}}-{tier}"} or (
        plan.get("Throttle"),
        plan.get("Quota"),
    ) != (
        {"RateLimit": {"Ref": f"{name}RateLimit"}, "BurstLimit": {"Ref": f"{name}BurstLimit"}},
        {"Limit": {"Ref": f"{name}QuotaLimit"}, "Period": {"Ref": f"{name}QuotaPeriod"}},
    ):
        missing.append(f"usage plan {plan_id}")
    if [stage.get("Throttle") for stage in plan.get("ApiStages", [])] != [method_throttle(name)]:
        missing.append(f"usage plan {plan_id} method throttle")
    rate = {"Ref": f"{name}ChatCompletionsRateLimit"}
    if template.get("Conditions", {}).get(f"{name}ThrottlesChatCompletions") != {
        "Fn::Not": [{"Fn::Equals": [rate, "0"]}]
    }:
        missing.append("condition")
    rule = template.get("Rules", {}).get(f"{name}ChatCompletionsThrottleHasBurst", {})
    if rule.get("RuleCondition") != {"Fn::Not": [{"Fn::Equals": [rate, "0"]}]} or [
        assertion["Assert"] for assertion in rule.get("Assertions", [])
    ] != [{"Fn::Not": [{"Fn::Equals": [{"Ref": f"{name}ChatCompletionsBurstLimit"}, "0"]}]}]:
        missing.append("rule")
    if not parameters <= set(template["Parameters"]):
        missing.append("parameters")
    groups = template.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups", [])
    if not any(set(group["Parameters"]) == parameters for group in groups):
        missing.append("parameter group")
    expected_entry = {field: f"${{{name}{suffix}}}" for field, suffix in TIERS_FIELDS.items()}
    if tiers_variable(template).get(tier) != expected_entry:
        missing.append("TIERS")
    if template["Outputs"].get(f"{name}UsagePlanId", {}).get("Value") != {"Ref": plan_id}:
        missing.append("output")
    signup = statements(resources["SignupUsagePlanKeysPolicy"]["Properties"]["PolicyDocument"])
    if not names_plan(signup["AttachKeysToOwnPlans"], plan_id):
        missing.append("SignupUsagePlanKeysPolicy")
    webhook = statements(resources["TierWebhookUsagePlansPolicy"]["Properties"]["PolicyDocument"])
    missing += [f"TierWebhookUsagePlansPolicy {sid}" for sid, st in webhook.items() if not names_plan(st, plan_id)]
    admin = statements(resources["AdminUsagePlansPolicy"]["Properties"]["PolicyDocument"])
    missing += [f"AdminUsagePlansPolicy {sid}" for sid, st in admin.items() if not names_plan(st, plan_id)]
    [monitor] = resources["QuotaMonitorFunction"]["Properties"]["Policies"]
    if not names_plan(statements(monitor)["ReadUsageOfOwnPlans"], plan_id):
        missing.append("QuotaMonitorFunction ReadUsageOfOwnPlans")
    return missing


def every_tier(template: Template) -> set[str]:
    return plan_tiers(template) | set(tiers_variable(template))


def test_the_tiers_are_the_usage_plans() -> None:
    assert every_tier(raw_template()) == {"free", "pro", "enterprise"}


@pytest.mark.parametrize("tier", sorted(every_tier(raw_template())))
def test_every_tier_is_in_every_place_a_tier_must_be(tier: str) -> None:
    # Given a tier of the template (a usage plan named <stack>-<tier>, or an entry of TIERS)
    template = raw_template()

    # Then its plan, parameters, parameter group, TIERS entry, output and the plan lists of three policies name it
    assert missing_places(template, tier) == []


def test_a_usage_plan_added_alone_is_missing_from_every_other_place() -> None:
    # Given the template plus a gold usage plan and nothing else
    template = copy.deepcopy(raw_template())
    gold = copy.deepcopy(template["Resources"]["ProUsagePlan"])
    gold["Properties"].update(
        UsagePlanName={"Fn::Sub": "${AWS::StackName}-gold"},
        Throttle={"RateLimit": {"Ref": "GoldRateLimit"}, "BurstLimit": {"Ref": "GoldBurstLimit"}},
        Quota={"Limit": {"Ref": "GoldQuotaLimit"}, "Period": {"Ref": "GoldQuotaPeriod"}},
    )
    gold["Properties"]["ApiStages"][0]["Throttle"] = method_throttle("Gold")
    template["Resources"]["GoldUsagePlan"] = gold

    # When the tiers are read
    assert "gold" in every_tier(template)

    # Then every place but the plan itself is reported
    assert missing_places(template, "gold") == [
        "condition",
        "rule",
        "parameters",
        "parameter group",
        "TIERS",
        "output",
        "SignupUsagePlanKeysPolicy",
        "TierWebhookUsagePlansPolicy AttachKeys",
        "TierWebhookUsagePlansPolicy DetachKeys",
        "TierWebhookUsagePlansPolicy ReadUsage",
        "TierWebhookUsagePlansPolicy SetRemainingQuota",
        "AdminUsagePlansPolicy AttachKeys",
        "AdminUsagePlansPolicy DetachKeys",
        "AdminUsagePlansPolicy ReadUsage",
        "AdminUsagePlansPolicy SetRemainingQuota",
        "QuotaMonitorFunction ReadUsageOfOwnPlans",
    ]


def test_every_parameter_is_in_exactly_one_parameter_group() -> None:
    # Given the console's parameter groups
    template = raw_template()
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = Counter(name for group in interface["ParameterGroups"] for name in group["Parameters"])

    # Then each declared parameter is in one group, and no group names a parameter that does not exist
    assert set(grouped) == set(template["Parameters"])
    assert [name for name, count in grouped.items() if count > 1] == []
    assert set(interface.get("ParameterLabels", {})) <= set(template["Parameters"])


def test_parameter_groups_follow_the_capabilities_then_the_tiers_then_operations() -> None:
    interface = raw_template()["Metadata"]["AWS::CloudFormation::Interface"]

    labels = [group["Label"]["default"] for group in interface["ParameterGroups"]]

    assert labels == [
        "Signup",
        "AI API: models and provider",
        "Quota monitoring",
        "Billing webhook",
        "Partner portal",
        "Tier: free",
        "Tier: pro",
        "Tier: enterprise",
        "Deploy and operations",
        "Capacity of the public routes",
    ]
