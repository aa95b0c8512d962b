"""What template.yaml must keep true for POST /v1/embeddings: a key route like the other /v1 routes, the chat
function's provider settings and timeout, and IAM limited to the embedding models and the tables it uses."""

import pytest

from offline.routes import declared_apis, declared_routes
from offline.template import StackTemplate, load_template

PROVIDER_VARIABLES = (
    "MODEL_PROVIDER",
    "UPSTREAM_BASE_URL",
    "UPSTREAM_API_KEY_SOURCE",
    "UPSTREAM_API_KEY_NAME",
    "UPSTREAM_TIMEOUT_SECONDS",
)


def test_embeddings_is_a_key_route_served_by_its_own_function(template: StackTemplate) -> None:
    routes = {
        (route.method, route.resource_path): route for route in declared_routes(template, declared_apis(template))
    }

    embeddings = routes[("POST", "/v1/embeddings")]
    chat = routes[("POST", "/v1/chat/completions")]

    # Same API, same key requirement (and so the same authorizer and usage plans) as chat completions
    assert embeddings.function_id == "EmbeddingsFunction"
    assert (embeddings.api_id, embeddings.api_key_required) == (chat.api_id, True)
    event = next(iter(template.resources["EmbeddingsFunction"]["Properties"]["Events"].values()))
    assert "Auth" not in event["Properties"]


def test_embeddings_reaches_the_same_provider_as_chat_within_the_buffered_time_limit() -> None:
    # Given a deployment on an OpenAI-compatible upstream
    template = load_template(
        overrides={"ModelProvider": "openai-compatible", "UpstreamBaseUrl": "https://llm.example/v1"}
    )
    functions = {
        name: template.resources[name]["Properties"] for name in ("ChatCompletionsFunction", "EmbeddingsFunction")
    }

    # Then both functions get the same provider settings, and the same catalog and tiers
    chat, embeddings = functions["ChatCompletionsFunction"], functions["EmbeddingsFunction"]
    for name in PROVIDER_VARIABLES:
        assert embeddings["Environment"]["Variables"][name] == chat["Environment"]["Variables"][name], name
    # And embeddings, a buffered route (chat may stream for 15 minutes), answer within API Gateway's 29 s
    assert embeddings["Timeout"] < 29


def test_embeddings_may_invoke_only_embedding_models(template: StackTemplate) -> None:
    # Only on Bedrock (the offline stack's template has no such policy)
    assert "EmbeddingsBedrockPolicy" not in template.resources
    policy = load_template(overrides={"ModelProvider": "bedrock"}).resources["EmbeddingsBedrockPolicy"]
    statement = policy["Properties"]["PolicyDocument"]["Statement"]

    assert policy["Properties"]["Roles"] == ["EmbeddingsFunctionRole"]
    assert [item["Action"] for item in statement] == ["bedrock:InvokeModel"]
    models = [str(resource).rsplit("foundation-model/", 1)[-1] for resource in statement[0]["Resource"]]
    assert models == ["amazon.titan-embed-text-*", "cohere.embed-*"]


@pytest.mark.parametrize(
    ("source", "name", "logical_id"),
    [("secretsmanager", "llm-key", "ChatUpstreamSecretPolicy"), ("ssm", "/llm/key", "ChatUpstreamParameterPolicy")],
)
def test_embeddings_reads_the_upstream_key_where_chat_does(source: str, name: str, logical_id: str) -> None:
    template = load_template(
        overrides={
            "ModelProvider": "openai-compatible",
            "UpstreamBaseUrl": "https://llm.example/v1",
            "UpstreamApiKeySource": source,
            "UpstreamApiKeyName": name,
        }
    )

    roles = template.resources[logical_id]["Properties"]["Roles"]

    assert roles == ["ChatCompletionsFunctionRole", "EmbeddingsFunctionRole"]


def test_embeddings_touches_only_the_partners_and_metering_tables(template: StackTemplate) -> None:
    statements = template.resources["EmbeddingsFunction"]["Properties"]["Policies"][0]["Statement"]

    assert {(item["Sid"], str(item["Action"])) for item in statements} == {
        ("ReadPartners", "dynamodb:GetItem"),
        ("MeterTokens", "['dynamodb:UpdateItem', 'dynamodb:GetItem']"),
    }
