"""The OpenAI-compatible provider against a fake upstream that keeps OpenAI's documented contract, and the
upstream key read from Secrets Manager or SSM (moto) through Powertools parameters."""

from collections.abc import Iterator

import boto3
import pytest

from core.ai.adapters.openai_compatible import OpenAICompatible
from core.ai.adapters.upstream_key import UpstreamApiKey
from core.ai.chat import ChatTurn, ModelRequest
from core.errors import ProviderMisconfigured, UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut
from tests.fake_openai_upstream import FakeUpstream, chat_completion, error_body, fake_upstream

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as running:
        yield running


def conversation(**overrides: object) -> ModelRequest:
    values: dict[str, object] = {
        "model": "gpt-small",
        "provider_model_id": "gpt-4o-mini",
        "system": ("Be brief.",),
        "turns": (ChatTurn("user", "Hello"), ChatTurn("assistant", "Hi."), ChatTurn("user", "Again")),
        "max_tokens": 40,
        "temperature": 0.1,
        "top_p": None,
        "stop": ("END",),
    }
    return ModelRequest(**{**values, **overrides})  # type: ignore[arg-type]


def test_the_request_is_openais_and_the_answer_maps_back(upstream: FakeUpstream) -> None:
    # Given an upstream that answers a chat completion
    upstream.then_answer(200, chat_completion("Hello back.", prompt_tokens=17, completion_tokens=4, finish="length"))
    provider = OpenAICompatible(upstream.base_url, api_key=lambda: UPSTREAM_KEY)

    # When the provider completes a conversation
    reply = provider.complete(conversation(), timeout_seconds=5)

    # Then it posted OpenAI's request with the upstream's model id and our upstream key
    [received] = upstream.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert received.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Again"},
        ],
        "max_tokens": 40,
        "stream": False,
        "temperature": 0.1,
        "stop": ["END"],
    }
    # And the reply is the upstream's text, finish reason and usage
    assert (reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens) == (
        "Hello back.",
        "length",
        17,
        4,
    )


def test_an_answer_without_usage_is_charged_at_the_estimate(upstream: FakeUpstream) -> None:
    answer = chat_completion("twelve bytes", 0, 0)
    del answer["usage"]
    upstream.then_answer(200, answer)

    reply = OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)

    # (9 + 5 + 3 + 5 bytes) / 3 -> 8 tokens + 8 per message; 12 bytes of reply -> 4 tokens
    assert (reply.prompt_tokens, reply.completion_tokens) == (8 + 32, 4)
    assert "authorization" not in upstream.requests[0].headers


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (400, error_body("maximum context length is 8192 tokens"), UpstreamRejected, "maximum context length"),
        (422, error_body("bad stop"), UpstreamRejected, "bad stop"),
        (401, error_body("Incorrect API key provided", code="invalid_api_key"), UpstreamFailed, "401"),
        (404, error_body("The model does not exist", code="model_not_found"), UpstreamFailed, "404"),
        (500, error_body("The server had an error", "server_error"), UpstreamFailed, "500"),
        (503, b"<html>bad gateway</html>", UpstreamFailed, "no error message"),
        (200, {"not": "a completion"}, UpstreamFailed, "not a chat completion"),
        (504, error_body("upstream timed out", "server_error"), UpstreamTimedOut, "5 s"),
    ],
)
def test_upstream_errors_become_domain_errors(
    upstream: FakeUpstream, status: int, body: object, error: type[Exception], message: str
) -> None:
    upstream.then_answer(status, body)

    with pytest.raises(error, match=message):
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)


def test_throttling_keeps_the_upstreams_retry_after(upstream: FakeUpstream) -> None:
    upstream.then_answer(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"), {"Retry-After": "7"})

    with pytest.raises(UpstreamThrottled) as throttled:
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=5)

    assert throttled.value.retry_after_seconds == 7


def test_a_slow_upstream_times_out(upstream: FakeUpstream) -> None:
    # Given an upstream that answers after 5 s
    upstream.then_answer(200, chat_completion("late", 1, 1), delay=5)

    # When the provider waits at most 0.2 s
    # Then it gives up with a timeout (and the test does not wait for the upstream)
    with pytest.raises(UpstreamTimedOut):
        OpenAICompatible(upstream.base_url).complete(conversation(), timeout_seconds=0.2)


def test_an_unreachable_upstream_fails() -> None:
    with pytest.raises(UpstreamFailed, match="could not be reached"):
        OpenAICompatible("http://127.0.0.1:9/v1").complete(conversation(), timeout_seconds=1)


@pytest.mark.parametrize(
    ("stored", "expected"), [(UPSTREAM_KEY, UPSTREAM_KEY), ('{"api_key": "' + UPSTREAM_KEY + '"}', UPSTREAM_KEY)]
)
def test_the_upstream_key_is_read_from_secrets_manager(aws: None, stored: str, expected: str) -> None:
    boto3.client("secretsmanager").create_secret(Name="metered-ai/openai", SecretString=stored)

    assert UpstreamApiKey("secretsmanager", "metered-ai/openai").value() == expected


def test_the_upstream_key_is_read_from_an_ssm_secure_string(aws: None) -> None:
    boto3.client("ssm").put_parameter(Name="/metered-ai/openai-key", Value=UPSTREAM_KEY, Type="SecureString")

    assert UpstreamApiKey("ssm", "/metered-ai/openai-key").value() == UPSTREAM_KEY


def test_a_missing_or_malformed_upstream_key_is_a_configuration_error(aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="wrong-shape", SecretString='{"key": "x"}')

    with pytest.raises(ProviderMisconfigured, match="secretsmanager 'absent'") as missing:
        UpstreamApiKey("secretsmanager", "absent").value()
    with pytest.raises(ProviderMisconfigured, match="api_key"):
        UpstreamApiKey("secretsmanager", "wrong-shape").value()
    assert UPSTREAM_KEY not in str(missing.value)
