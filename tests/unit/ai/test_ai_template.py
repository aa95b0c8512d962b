"""What template.yaml must keep true for the AI API: TIERS agrees with the usage plans, every tier's models
are in the catalog, keys come from the authorizer on every key route, and timeouts stay below API Gateway's."""

import json
from typing import Any

import pytest

from core.ai.streaming import BUFFERED_SECONDS
from core.tier_policy import ModelCatalog, TierPolicy
from offline.routes import declared_apis, declared_routes
from offline.template import StackTemplate, load_template

API_GATEWAY_TIMEOUT_SECONDS = 29
API_GATEWAY_STREAM_MS = 900_000


def tiers_of(template: StackTemplate) -> dict[str, TierPolicy]:
    variables = template.resources["ChatCompletionsFunction"]["Properties"]["Environment"]["Variables"]
    return {name: TierPolicy.model_validate(policy) for name, policy in json.loads(variables["TIERS"]).items()}


def tiers_models_variable(template: StackTemplate) -> str:
    return str(template.resources["ChatCompletionsFunction"]["Properties"]["Environment"]["Variables"]["MODELS"])


def plans_of(template: StackTemplate) -> dict[str, dict[str, Any]]:
    prefix = f"{template.stack_name}-"
    return {
        str(props["UsagePlanName"]).removeprefix(prefix): props
        for props in template.of_type("AWS::ApiGateway::UsagePlan").values()
    }


@pytest.mark.parametrize(
    "overrides",
    [{}, {"FreeRateLimit": "2", "ProQuotaLimit": "7", "EnterpriseQuotaPeriod": "WEEK", "FreeModels": "*"}],
)
def test_tiers_has_one_policy_per_usage_plan_with_the_plans_limits(overrides: dict[str, str]) -> None:
    # Given the template with its defaults, or with tier parameters overridden
    template = load_template(overrides=overrides)

    # When the AI functions read TIERS
    tiers = tiers_of(template)

    # Then every usage plan (tier) has a policy, with exactly the plan's throttle and quota
    plans = plans_of(template)
    assert set(tiers) == set(plans)
    for name, plan in plans.items():
        policy = tiers[name]
        assert policy.rate_limit == float(plan["Throttle"]["RateLimit"])
        assert policy.burst_limit == int(plan["Throttle"]["BurstLimit"])
        assert policy.quota_limit == int(plan["Quota"]["Limit"])
        assert policy.quota_period == plan["Quota"]["Period"]


def test_every_tiers_models_are_in_the_catalog(template: StackTemplate) -> None:
    # The catalog the functions get (Models, or the Region's default models)
    catalog = ModelCatalog.parse(tiers_models_variable(template))

    for name, policy in tiers_of(template).items():
        assert policy.allowed_models(catalog), f"tier {name} may call no model"
        assert all(model == "*" or catalog.get(model) for model in policy.models), name


def test_keys_come_from_the_authorizer_on_every_key_route(template: StackTemplate) -> None:
    apis = declared_apis(template)
    api = template.resources["MeteredApi"]["Properties"]
    authorizer = api["Auth"]["Authorizers"][api["Auth"]["DefaultAuthorizer"]]

    # The key source is the authorizer, a REQUEST authorizer without identity sources and so without a cache
    assert apis["MeteredApi"].key_source == "AUTHORIZER"
    assert authorizer["FunctionPayloadType"] == "REQUEST"
    assert authorizer["Identity"] == {"ReauthorizeEvery": 0}
    # Public routes opt out of the key and of the authorizer, /admin routes take IAM instead; key routes keep
    # the default authorizer
    functions = template.of_type("AWS::Serverless::Function")
    for route in declared_routes(template, apis):
        auth = next(
            (event["Properties"].get("Auth") or {})
            for event in functions[route.function_id]["Events"].values()
            if event["Properties"]["Path"] == route.resource_path
        )
        if route.api_key_required:
            assert "Authorizer" not in auth, route
        elif route.resource_path.startswith("/admin"):
            assert auth.get("Authorizer") == "AWS_IAM", route  # the operator console: SigV4, no key
        else:
            assert auth.get("Authorizer") == "NONE", route


def test_the_chat_function_answers_before_api_gateway_gives_up(template: StackTemplate) -> None:
    chat = template.resources["ChatCompletionsFunction"]["Properties"]
    [route] = chat["Events"].values()
    upstream_limit = int(template.stacks[0].template_dict["Parameters"]["UpstreamTimeoutSeconds"]["MaxValue"])

    # A buffered answer keeps the 29 s rule inside the streaming function: 2 s after the model's timeout to
    # release the reservation and answer 504
    assert BUFFERED_SECONDS < API_GATEWAY_TIMEOUT_SECONDS
    assert upstream_limit + 2 <= BUFFERED_SECONDS
    # A stream may run until API Gateway's 15-minute cap, which the function's timeout matches
    assert int(route["Properties"]["TimeoutInMillis"]) == int(chat["Timeout"]) * 1000 == API_GATEWAY_STREAM_MS


def test_the_offline_stack_serves_the_offline_provider_unless_told_otherwise() -> None:
    assert load_template().parameters["ModelProvider"] == "offline"
    assert load_template(overrides={"ModelProvider": "bedrock"}).parameters["ModelProvider"] == "bedrock"
