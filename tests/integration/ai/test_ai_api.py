"""The AI API's functions in-process, on the emulated stack provisioned from template.yaml (small budgets
through parameter overrides), with partners made by the signup function: OpenAI-shaped answers, token
budgets under concurrency, upstream failures that charge nothing, tier allow-lists, /v1/usage and metrics."""

import base64
import copy
import io
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from core.adapters.metering_items import bucket_start, model_tokens_of, tokens_by_model
from core.adapters.partners_table import PartnerRecords
from core.ai import service as ai_api
from core.ai.adapters.metering_table import MeteringTable
from core.ai.chat import ModelReply, ModelRequest
from core.ai.metering import TokenMeter
from core.ai.offline_model import OfflineModel
from core.ai.service import AiApi, chat_api
from core.ai.settings import ChatSettings
from core.errors import TokenBudgetExceeded, UpstreamFailed
from core.periods import period_bounds, period_key
from core.settings import forget_settings, load_settings
from core.signup.service import signup_service
from handlers import chat_completions, models, signup, usage
from offline.provision import ProvisionedStack, provision
from offline.template import StackTemplate, load_template
from tests.fake_openai_upstream import FakeUpstream, chat_completion, error_body, fake_upstream
from tests.lambda_events import LambdaContext, sample_event, signup_event
from tests.lwa_client import as_lambda_handler

# Small numbers so a test can spend a budget: free may call nova-micro only, with 200 tokens per day and
# max_tokens 5 when a request sends none. Every tier is self-service here, to sign partners up on any.
PARAMETERS = {
    "SelfServiceTiers": "free,pro,enterprise",
    "FreeTokenBudget": "200",
    "FreeDefaultMaxTokens": "5",
    "EnterpriseTokenBudget": "0",
    # Pro's plan throttles chat completions tighter than its other routes (a method throttle).
    "ProChatCompletionsRateLimit": "2",
    "ProChatCompletionsBurstLimit": "3",
}
FUNCTIONS = ("SignupFunction", "ModelsFunction", "UsageFunction", "ChatCompletionsFunction")
# The chat function's ASGI app behind the Lambda Web Adapter, answering each event as the adapter would.
chat_handler = as_lambda_handler(chat_completions.app)


@pytest.fixture(scope="module")
def ai_template() -> StackTemplate:
    return load_template(overrides=PARAMETERS)


def _clear_caches() -> None:
    forget_settings()
    for cached in (
        signup_service,
        ai_api.models_api,
        ai_api.usage_api,
        ai_api.chat_api,
    ):
        cached.cache_clear()


@pytest.fixture
def ai_stack(aws: None, ai_template: StackTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProvisionedStack]:
    """The stack, and the environment the template gives the signup and AI functions (they agree on it)."""
    stack = provision(ai_template)
    for logical_id in FUNCTIONS:
        variables = ai_template.resources[logical_id]["Properties"]["Environment"]["Variables"]
        for name, value in stack.environment(variables).items():
            monkeypatch.setenv(name, value)
    _clear_caches()
    yield stack
    _clear_caches()


@dataclass(frozen=True)
class Partner:
    partner_id: str
    api_key_id: str
    tier: str


def sign_up(tier: str = "free", email: str = "dev@acme.example") -> Partner:
    response = signup.handler(signup_event({"name": "Acme", "email": email, "tier": tier}), LambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == HTTPStatus.CREATED, body
    return Partner(body["partner_id"], body["api_key_id"], tier)


def event(name: str, key_id: str | None, body: Any = None) -> dict[str, Any]:
    """A sample API Gateway event from events/, as API Gateway sends it after the key checks."""
    sent = copy.deepcopy(sample_event(name))
    sent["requestContext"]["identity"]["apiKeyId"] = key_id
    if body is not None:
        sent["body"] = body if isinstance(body, str) else json.dumps(body)
    return sent


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(handler: Callable[[dict[str, Any], Any], dict[str, Any]], sent: dict[str, Any]) -> Answer:
    response = handler(sent, LambdaContext(function_name="ai", remaining_ms=27_000))
    headers = dict(response.get("headers") or {})
    headers.update({name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()})
    return Answer(response["statusCode"], json.loads(response["body"]), headers)


def chat(key_id: str | None, words: int = 3, model: str = "nova-micro", **fields: Any) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": " ".join(["word"] * words)}], **fields}
    return call(chat_handler, event("chat_completions.json", key_id, body))


def ledger_item(stack: ProvisionedStack, partner: Partner, period: str = "DAY") -> dict[str, Any]:
    start, _ = period_bounds(period, ai_api.datetime.now(ai_api.UTC))  # type: ignore[arg-type]
    return boto3.client("dynamodb").get_item(
        TableName=stack.physical_ids["MeteringTable"],
        Key={"pk": {"S": f"KEY#{partner.api_key_id}"}, "sk": {"S": f"PERIOD#{period_key(start)}"}},
    )["Item"]


def ledger(stack: ProvisionedStack, partner: Partner, period: str = "DAY") -> dict[str, int]:
    # The period's counters (the per-slice ones of the usage chart are checked through /v1/usage, the by-model
    # ones by ledger_by_model).
    return {
        name: int(value["N"])
        for name, value in ledger_item(stack, partner, period).items()
        if "N" in value and name != "expires_at" and bucket_start(name) is None and model_tokens_of(name) is None
    }


def ledger_by_model(stack: ProvisionedStack, partner: Partner, period: str = "DAY") -> dict[str, dict[str, int]]:
    item = ledger_item(stack, partner, period)
    return tokens_by_model({name: value["N"] for name, value in item.items() if "N" in value})


def assert_openai_error(answer: Answer, status: HTTPStatus, error_type: str, code: str) -> None:
    assert answer.status == status
    assert set(answer.body) == {"error"}
    assert set(answer.body["error"]) == {"message", "type", "param", "code"}
    assert (answer.body["error"]["type"], answer.body["error"]["code"]) == (error_type, code)


def test_a_chat_completion_in_openais_shape_is_metered_in_tokens(ai_stack: ProvisionedStack) -> None:
    # Given a free partner
    partner = sign_up()

    # When it asks for a completion (4 words in, the offline provider echoes them)
    answer = chat(partner.api_key_id, words=4, max_tokens=10)

    # Then the answer has OpenAI's shape, the public model name and the usage
    assert answer.status == HTTPStatus.OK
    body = answer.body
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "nova-micro"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "word word word word", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert answer.headers["x-request-id"]
    # And the ledger counted the request and its tokens, with nothing left reserved
    assert ledger(ai_stack, partner) == {
        "requests": 1,
        "prompt_tokens": 4,
        "completion_tokens": 4,
        "reserved_tokens": 0,
        "committed_tokens": 8,
    }
    # And the model's own counters, added by the same write
    assert ledger_by_model(ai_stack, partner) == {"nova-micro": {"prompt_tokens": 4, "completion_tokens": 4}}


def test_the_budget_runs_out_with_429_insufficient_quota(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (200 tokens a day) that has used 150 of them
    partner = sign_up()
    assert chat(partner.api_key_id, words=75, max_tokens=75).status == HTTPStatus.OK

    # When it asks for a completion that reserves more than the 50 left (10 prompt + 50 max_tokens)
    refused = chat(partner.api_key_id, words=10, max_tokens=50)

    # Then it is refused in OpenAI's shape, the SDKs are told not to retry, and nothing more is charged
    assert_openai_error(refused, HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
    assert "60 tokens" in refused.body["error"]["message"]
    assert "50 remain" in refused.body["error"]["message"]
    assert refused.headers["x-should-retry"] == "false"
    assert ledger(ai_stack, partner)["committed_tokens"] == 150
    # And a request that fits is still served, and the request count includes the refused one
    assert chat(partner.api_key_id, words=10, max_tokens=40).status == HTTPStatus.OK
    assert ledger(ai_stack, partner)["requests"] == 3


def test_a_reservation_of_exactly_the_whole_budget_is_admitted(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (budget 200) that has used nothing
    partner = sign_up()

    # When it asks for a completion that reserves exactly 200 tokens (10 prompt + 190 max_tokens)
    answer = chat(partner.api_key_id, words=10, max_tokens=190)

    # Then it is served
    assert answer.status == HTTPStatus.OK, answer.body


def test_reserving_exactly_what_remains_succeeds_and_one_token_more_fails(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (budget 200) that has used 20 tokens (10 in, 10 out): 180 remain
    partner = sign_up()
    assert chat(partner.api_key_id, words=10, max_tokens=10).status == HTTPStatus.OK

    # When it reserves exactly the 180 left (10 + 170), then, with 160 left, one token more than that (10 + 151)
    exact = chat(partner.api_key_id, words=10, max_tokens=170)
    over = chat(partner.api_key_id, words=10, max_tokens=151)

    # Then the first is served and the second refused, with nothing charged for it
    assert exact.status == HTTPStatus.OK, exact.body
    assert_openai_error(over, HTTPStatus.TOO_MANY_REQUESTS, "insufficient_quota", "insufficient_quota")
    assert "161 tokens" in over.body["error"]["message"]
    assert "160 remain" in over.body["error"]["message"]
    assert ledger(ai_stack, partner)["committed_tokens"] == 40


def test_without_max_tokens_the_tiers_default_is_reserved_and_sent(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (FreeDefaultMaxTokens=5)
    partner = sign_up()

    # When it sends no max_tokens with a 9-word message
    answer = chat(partner.api_key_id, words=9)

    # Then the model was held to 5 tokens
    assert (answer.body["choices"][0]["finish_reason"], answer.body["usage"]["completion_tokens"]) == ("length", 5)


def test_concurrent_requests_near_the_budget_never_overshoot_it(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (budget 200) and 12 requests at once that each need 30 tokens (20 + max 10):
    # the offline provider's prompt estimate is exact and each reply uses all 10 tokens
    partner = sign_up()
    api = chat_api()
    caller = api.caller(partner.api_key_id)
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "w " * 20}], "max_tokens": 10})

    def attempt(_: int) -> str:
        try:
            api.complete(caller, body, seconds_left=20)
        except TokenBudgetExceeded:
            return "refused"
        return "served"

    # When they run concurrently
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(attempt, range(12)))

    # Then exactly the 6 that fit are served (6 x 30 = 180 <= 200 < 210), the budget holds, nothing stays reserved
    assert outcomes.count("served") == 6
    counters = ledger(ai_stack, partner)
    assert counters["prompt_tokens"] + counters["completion_tokens"] == 180
    assert counters["reserved_tokens"] == 0
    assert counters["requests"] == 12


class UnderestimatingModel:
    """A model whose prompts cost `extra` tokens more than the reservation estimated (as a real tokenizer may)."""

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return 10

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        return ModelReply("x", "length", prompt_tokens=10 + self.extra, completion_tokens=request.max_tokens)


def test_an_underestimated_prompt_overshoots_by_no_more_than_the_estimate_missed(ai_stack: ProvisionedStack) -> None:
    # Given a model that costs 7 tokens more per prompt than estimated, and a free partner (budget 200)
    partner = sign_up()
    settings = load_settings(ChatSettings)
    api = AiApi(
        settings,
        PartnerRecords(settings.partners_table),
        MeteringTable(settings.metering_table),
        UnderestimatingModel(extra=7),
        record_metrics=lambda _: None,
    )
    caller = api.caller(partner.api_key_id)
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20})

    def attempt(_: int) -> bool:
        try:
            api.complete(caller, body, seconds_left=20)
        except TokenBudgetExceeded:
            return False
        return True

    # When 12 requests of 30 reserved tokens run at once
    with ThreadPoolExecutor(max_workers=12) as pool:
        served = sum(pool.map(attempt, range(12)))

    # Then the overshoot is at most what the estimates missed for the requests that were served
    counters = ledger(ai_stack, partner)
    used = counters["prompt_tokens"] + counters["completion_tokens"]
    assert used == served * 37
    assert used <= 200 + served * 7
    assert counters["reserved_tokens"] == 0


class MovableClock:
    """Now, or later: the AI API's wall clock, moved on by a test."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@contextmanager
def settle_throttled(table: MeteringTable) -> Iterator[list[str]]:
    """Every UpdateItem that settles a reservation answers DynamoDB's throttling error (retries spent)."""
    events = table._client.meta.events
    refused: list[str] = []

    def throttle(params: dict[str, Any], **_: Any) -> Any:
        if b"prompt_tokens" not in params.get("body", b""):
            return None
        refused.append("UpdateItem")
        parsed = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}
        return AWSResponse("https://injected", 400, {}, None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": 400}}  # type: ignore[arg-type]

    events.register("before-call.dynamodb.UpdateItem", throttle)
    try:
        yield refused
    finally:
        events.unregister("before-call.dynamodb.UpdateItem", throttle)


def test_a_reservation_that_could_not_be_settled_is_given_back_after_the_functions_deadline(
    ai_stack: ProvisionedStack,
) -> None:
    # Given a free partner (budget 200) and a completion whose settlement DynamoDB keeps throttling
    partner = sign_up()
    settings, clock = load_settings(ChatSettings), MovableClock()
    ledger_table = MeteringTable(settings.metering_table)
    api = AiApi(
        settings,
        PartnerRecords(settings.partners_table),
        ledger_table,
        OfflineModel(),
        clock=clock,
        record_metrics=lambda _: None,
    )
    caller = api.caller(partner.api_key_id)

    def body(max_tokens: int) -> str:
        return json.dumps(
            {"model": "nova-micro", "messages": [{"role": "user", "content": "w " * 10}], "max_tokens": max_tokens}
        )

    with settle_throttled(ledger_table) as refused:
        completion = api.complete(caller, body(90), seconds_left=20)

    # Then the caller still has its answer, and its 100 tokens stay held while its function could settle them
    assert (refused, completion.reply.completion_tokens) == (["UpdateItem"], 10)
    assert ledger(ai_stack, partner)["reserved_tokens"] == 100
    with pytest.raises(TokenBudgetExceeded):
        api.complete(caller, body(140), seconds_left=20)  # 150 tokens, 100 left

    # When that function's deadline has passed and a request needs the held tokens
    clock.ahead = timedelta(seconds=30)
    served = api.complete(caller, body(140), seconds_left=20)

    # Then the stale hold is given back and the request served: nothing stays reserved, and only what was
    # settled is charged
    counters = ledger(ai_stack, partner)
    assert served.reply.completion_tokens == 10
    assert (counters["reserved_tokens"], counters["committed_tokens"], counters["requests"]) == (0, 20, 3)


def test_a_settlement_retried_after_it_was_applied_is_not_charged_twice(ai_stack: ProvisionedStack) -> None:
    # Given a served completion whose settlement DynamoDB applied (its answer lost, so botocore sends it again)
    partner = sign_up()
    settings = load_settings(ChatSettings)
    table = MeteringTable(settings.metering_table)
    api = AiApi(settings, PartnerRecords(settings.partners_table), table, OfflineModel(), record_metrics=lambda _: None)
    caller = api.caller(partner.api_key_id)
    meter = TokenMeter(table)
    entry = meter.entry(caller)
    reservation = meter.reserve(entry, caller, tokens=30, seconds_left=20)
    reply = ModelReply("a b", "stop", prompt_tokens=5, completion_tokens=2)

    # When the same settlement arrives twice, and then a release of it
    meter.settle(reservation, reply)
    meter.settle(reservation, reply)
    meter.release(reservation)

    # Then it counted once
    counters = ledger(ai_stack, partner)
    assert (counters["reserved_tokens"], counters["prompt_tokens"], counters["completion_tokens"]) == (0, 5, 2)
    assert counters["committed_tokens"] == 7


@pytest.fixture
def upstream(ai_stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUpstream]:
    """The chat function on the openai-compatible provider, against a fake upstream, with a 0.3 s timeout."""
    with fake_upstream() as running:
        monkeypatch.setenv("MODEL_PROVIDER", "openai-compatible")
        monkeypatch.setenv("UPSTREAM_BASE_URL", running.base_url)
        monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "0.3")
        _clear_caches()
        yield running


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ((500, error_body("The server had an error", "server_error"), 0.0), HTTPStatus.BAD_GATEWAY, "upstream_error"),
        ((200, chat_completion("too late", 3, 3), 5.0), HTTPStatus.GATEWAY_TIMEOUT, "upstream_timeout"),
        ((429, error_body("slow down", "requests"), 0.0), HTTPStatus.TOO_MANY_REQUESTS, "upstream_rate_limited"),
    ],
)
def test_upstream_failures_answer_502_504_429_and_charge_nothing(
    upstream: FakeUpstream,
    ai_stack: ProvisionedStack,
    answer: tuple[int, Any, float],
    status: HTTPStatus,
    code: str,
) -> None:
    # Given a free partner and an upstream that fails (500), does not answer in time, or throttles
    partner = sign_up()
    upstream.then_answer(answer[0], answer[1], delay=answer[2])

    # When the partner asks for a completion
    refused = chat(partner.api_key_id, words=4, max_tokens=10)

    # Then the error is OpenAI-shaped with the gateway status, the upstream's own words are not passed on,
    # and the request is counted but its reservation is released: no tokens charged
    error_type = "rate_limit_error" if status == HTTPStatus.TOO_MANY_REQUESTS else "server_error"
    assert_openai_error(refused, status, error_type, code)
    assert "The server had an error" not in refused.body["error"]["message"]
    counters = ledger(ai_stack, partner)
    assert (counters["requests"], counters["committed_tokens"], counters["reserved_tokens"]) == (1, 0, 0)
    assert "prompt_tokens" not in counters or counters["prompt_tokens"] == 0


def test_the_upstream_answer_is_charged_at_its_reported_usage(
    upstream: FakeUpstream, ai_stack: ProvisionedStack
) -> None:
    partner = sign_up()
    upstream.then_answer(200, chat_completion("Hello!", prompt_tokens=11, completion_tokens=2))

    answer = chat(partner.api_key_id, words=4, max_tokens=10)

    assert answer.body["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    assert upstream.requests[0].body["model"] == "us.amazon.nova-micro-v1:0"  # the catalog's provider id (us-east-1)
    assert ledger(ai_stack, partner)["committed_tokens"] == 13


def test_an_unexpected_provider_failure_releases_the_reservation(
    ai_stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that breaks in a way nobody planned for
    partner = sign_up()

    def broken(self: OfflineModel, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        raise RuntimeError("boom")

    monkeypatch.setattr(OfflineModel, "complete", broken)

    # When a completion is asked for
    answer = chat(partner.api_key_id, words=4, max_tokens=10)

    # Then the caller gets a 500 in OpenAI's shape and the reservation is given back
    assert_openai_error(answer, HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal_error")
    assert ledger(ai_stack, partner)["reserved_tokens"] == 0


def test_a_tier_calling_a_model_outside_its_list_is_refused(ai_stack: ProvisionedStack) -> None:
    # Given a free partner (FreeModels=nova-micro) and an enterprise partner (EnterpriseModels=*)
    free = sign_up("free", "free@acme.example")
    enterprise = sign_up("enterprise", "big@acme.example")

    # When each calls nova-pro, and the free one a model nobody serves
    outside = chat(free.api_key_id, model="nova-pro")
    allowed = chat(enterprise.api_key_id, model="nova-pro")
    unknown = chat(free.api_key_id, model="gpt-4o")

    # Then the tier's list decides: 403 outside it, 404 for a model the deployment does not have
    assert_openai_error(outside, HTTPStatus.FORBIDDEN, "permission_error", "model_not_in_tier")
    assert outside.body["error"]["param"] == "model"
    assert "nova-micro" in outside.body["error"]["message"]
    assert allowed.status == HTTPStatus.OK
    assert_openai_error(unknown, HTTPStatus.NOT_FOUND, "invalid_request_error", "model_not_found")
    # And the refused requests were counted (API Gateway counted them) but charged nothing
    assert ledger(ai_stack, free) == {"requests": 2}


def test_models_lists_what_the_callers_tier_may_use(ai_stack: ProvisionedStack) -> None:
    free = sign_up("free", "free@acme.example")
    pro = sign_up("pro", "pro@acme.example")
    enterprise = sign_up("enterprise", "big@acme.example")

    listed = {
        partner.tier: call(models.handler, event("get_models.json", partner.api_key_id)).body
        for partner in (free, pro, enterprise)
    }

    assert {tier: [model["id"] for model in body["data"]] for tier, body in listed.items()} == {
        "free": ["nova-micro"],
        "pro": ["nova-micro", "nova-lite", "titan-embed-text-v2"],
        "enterprise": ["nova-micro", "nova-lite", "nova-pro", "titan-embed-text-v2"],
    }
    assert listed["free"] == {
        "object": "list",
        "data": [{"id": "nova-micro", "object": "model", "created": 0, "owned_by": "metered-ai"}],
    }


def test_a_tier_change_applies_from_the_next_request(ai_stack: ProvisionedStack) -> None:
    # Given a free partner whose tier the AI API has just read (and may keep)
    partner = sign_up("free")
    before = call(models.handler, event("get_models.json", partner.api_key_id)).body

    # When its tier becomes pro in the partners table (as the billing webhook writes it), with no time passing
    boto3.client("dynamodb").update_item(
        TableName=ai_stack.physical_ids["PartnersTable"],
        Key={"pk": {"S": f"PARTNER#{partner.partner_id}"}},
        UpdateExpression="SET tier = :pro",
        ExpressionAttributeValues={":pro": {"S": "pro"}},
    )
    after = call(models.handler, event("get_models.json", partner.api_key_id)).body
    served = chat(partner.api_key_id, model="nova-lite", max_tokens=5)

    # Then the very next requests see the pro tier's models
    assert [model["id"] for model in before["data"]] == ["nova-micro"]
    assert [model["id"] for model in after["data"]] == ["nova-micro", "nova-lite", "titan-embed-text-v2"]
    assert served.status == HTTPStatus.OK, served.body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], "stream_options": {}},
            "stream_options",
        ),
        ({"model": "nova-micro", "messages": [{"role": "user"}]}, "messages[0]"),
        ("{broken", None),
    ],
)
def test_invalid_requests_are_400_in_openais_shape(ai_stack: ProvisionedStack, body: Any, param: str | None) -> None:
    partner = sign_up()

    answer = call(chat_handler, event("chat_completions.json", partner.api_key_id, body))

    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert answer.body["error"]["param"] == param
    assert ledger(ai_stack, partner) == {"requests": 1}


@pytest.mark.parametrize("max_tokens", [10**40, 5001])
def test_max_tokens_beyond_the_models_limit_is_400_even_on_an_unlimited_budget(
    ai_stack: ProvisionedStack, max_tokens: int
) -> None:
    # Given an enterprise partner (no token budget) and nova-micro, which writes at most 5000 tokens
    partner = sign_up("enterprise")

    # When it asks for more (40 digits overflowed DynamoDB's numbers: a 500 before)
    answer = chat(partner.api_key_id, model="nova-micro", max_tokens=max_tokens)

    # Then 400 names max_tokens, in OpenAI's shape, and nothing is reserved
    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert answer.body["error"]["param"] == "max_tokens"
    assert "at most 5000" in answer.body["error"]["message"]
    assert ledger(ai_stack, partner, "MONTH") == {"requests": 1}


def test_a_body_that_is_not_utf8_is_400_in_openais_shape(ai_stack: ProvisionedStack) -> None:
    # Given a body API Gateway passes on base64-encoded because it is not UTF-8 text
    partner = sign_up()
    sent = event("chat_completions.json", partner.api_key_id)
    sent["body"], sent["isBase64Encoded"] = base64.b64encode(b'{"model": "\xff\xfe"}').decode(), True

    # When it reaches the function
    answer = call(chat_handler, sent)

    # Then 400, not 500
    assert_openai_error(answer, HTTPStatus.BAD_REQUEST, "invalid_request_error", "invalid_request")
    assert "UTF-8" in answer.body["error"]["message"]


def test_a_key_without_a_partner_is_refused(ai_stack: ProvisionedStack) -> None:
    # Given a key API Gateway accepted but no partner owns (made by hand in the console)
    # When it calls each route
    answers = [
        call(models.handler, event("get_models.json", "handmade1")),
        call(usage.handler, event("get_usage.json", "handmade1")),
        chat("handmade1"),
    ]

    # Then each answers 403 in OpenAI's shape
    for answer in answers:
        assert_openai_error(answer, HTTPStatus.FORBIDDEN, "permission_error", "key_not_registered")


def test_usage_matches_the_calls_made(ai_stack: ProvisionedStack) -> None:
    # Given a free partner that listed models twice, made two completions and had one refused
    partner = sign_up()
    for _ in range(2):
        call(models.handler, event("get_models.json", partner.api_key_id))
    chat(partner.api_key_id, words=4, max_tokens=10)  # 4 prompt + 4 completion tokens
    chat(partner.api_key_id, words=100, max_tokens=10)  # 100 + 10
    chat(partner.api_key_id, words=100, max_tokens=10)  # reserves 110: does not fit in the 82 left

    # When it reads its usage
    answer = call(usage.handler, event("get_usage.json", partner.api_key_id))

    # Then every number is the ledger's, this request included, as API Gateway counts it
    assert answer.status == HTTPStatus.OK
    start, reset = period_bounds("DAY", ai_api.datetime.now(ai_api.UTC))
    body = answer.body
    assert body["object"] == "usage"
    assert body["tier"] == "free"
    assert body["period"] == {"quota_period": "DAY", "start": period_key(start), "resets_at": period_key(reset)}
    assert body["requests"] == {
        "used": 6,
        "remaining": 1000 - 6,
        "limit": 1000,
        "source": "ledger",
        "quota_reading_as_of": None,
    }
    assert body["tokens"] == {
        "prompt": 104,
        "completion": 14,
        "used": 118,
        "reserved": 0,
        "budget": 200,
        "remaining": 82,
    }
    assert body["throttle"] == {"rate_limit": 5.0, "burst_limit": 10, "chat_completions": None}
    assert body["as_of"].endswith("Z")
    # and the period so far, hour by hour (a DAY period), adds up to the same totals
    series = body["series"]
    assert series["bucket"] == "hour"
    assert sum(point["requests"] for point in series["points"]) == 6
    assert sum(point["tokens"] for point in series["points"]) == 118
    for point in series["points"]:
        hour = datetime.fromisoformat(point["start"])
        assert start <= hour < reset
        assert (hour.minute, hour.second) == (0, 0)


def test_a_monthly_tiers_usage_series_is_by_day(ai_stack: ProvisionedStack) -> None:
    # Given an enterprise partner (a MONTH quota period) that made one completion
    partner = sign_up("enterprise")
    chat(partner.api_key_id, words=4, max_tokens=10)

    # When it reads its usage
    body = call(usage.handler, event("get_usage.json", partner.api_key_id)).body

    # Then the series is by UTC day
    assert body["period"]["quota_period"] == "MONTH"
    assert body["series"]["bucket"] == "day"
    assert sum(point["requests"] for point in body["series"]["points"]) == 2
    assert sum(point["tokens"] for point in body["series"]["points"]) == 8
    assert all(point["start"].endswith("T00:00:00Z") for point in body["series"]["points"])


def test_usage_reports_the_plans_method_throttle_on_chat_completions(ai_stack: ProvisionedStack) -> None:
    # Given a pro partner, whose plan throttles POST /v1/chat/completions at 2 requests/s, burst 3
    partner = sign_up(tier="pro")

    # When it reads its usage
    answer = call(usage.handler, event("get_usage.json", partner.api_key_id))

    # Then the throttle names the plan's own limits and the chat completions method's
    assert answer.status == HTTPStatus.OK
    assert answer.body["throttle"] == {
        "rate_limit": 50.0,
        "burst_limit": 100,
        "chat_completions": {"rate_limit": 2.0, "burst_limit": 3},
    }


def test_usage_starts_from_the_quota_monitors_reading_when_there_is_one(ai_stack: ProvisionedStack) -> None:
    # Given a partner with 3 requests in the ledger, and the quota monitor's reading of API Gateway taken
    # after the second one, when an operator had granted 10 more requests (UpdateUsage): 2 used, 1008 left
    partner = sign_up()
    for _ in range(3):
        call(models.handler, event("get_models.json", partner.api_key_id))
    start, _ = period_bounds("DAY", ai_api.datetime.now(ai_api.UTC))
    boto3.client("dynamodb").put_item(
        TableName=ai_stack.physical_ids["MeteringTable"],
        Item={
            "pk": {"S": f"KEY#{partner.api_key_id}"},
            "sk": {"S": f"QUOTA#{period_key(start)}"},
            "used": {"N": "2"},
            "remaining": {"N": "1008"},
            "limit": {"N": "1000"},
            "as_of": {"S": "2026-03-10T12:00:00Z"},
            "tier": {"S": "free"},
        },
    )

    # When it reads its usage (its 4th request)
    requests = call(usage.handler, event("get_usage.json", partner.api_key_id)).body["requests"]

    # Then the reading is the base and the 2 requests the ledger saw since are taken off what it found left
    assert requests == {
        "used": 4,
        "remaining": 1006,
        "limit": 1000,
        "source": "quota_monitor",
        "quota_reading_as_of": "2026-03-10T12:00:00Z",
    }


def test_each_completion_emits_metrics_by_tier_and_model_only(
    ai_stack: ProvisionedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a free partner
    partner = sign_up()
    capsys.readouterr()

    # When it makes a completion
    chat(partner.api_key_id, words=4, max_tokens=10)

    # Then one EMF record carries requests, tokens and upstream latency, by tier and model, never by key
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [record] = [record for record in records if "ChatRequests" in record]
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "MeteredAI"
    assert sorted(directive["Dimensions"][0]) == ["model", "service", "tier"]
    assert {metric["Name"] for metric in directive["Metrics"]} == {
        "ChatRequests",
        "PromptTokens",
        "CompletionTokens",
        "UpstreamLatency",
    }
    assert (record["tier"], record["model"], record["PromptTokens"], record["CompletionTokens"]) == (
        "free",
        "nova-micro",
        [4.0],
        [4.0],
    )
    assert partner.api_key_id not in json.dumps(record)
    assert partner.partner_id not in json.dumps(record)


def test_a_budget_refusal_is_a_metric_too(ai_stack: ProvisionedStack, capsys: pytest.CaptureFixture[str]) -> None:
    partner = sign_up()
    capsys.readouterr()

    chat(partner.api_key_id, words=150, max_tokens=60)

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"TokenBudgetRefusals"' in line]
    assert [record["TokenBudgetRefusals"] for record in records] == [[1.0]]


def test_a_failed_upstream_is_logged_for_operators_without_the_callers_content(
    upstream: FakeUpstream, ai_stack: ProvisionedStack, powertools_log: io.StringIO
) -> None:
    partner = sign_up()
    upstream.then_answer(502, error_body("bad gateway upstream", "server_error"))

    chat(partner.api_key_id, words=4, max_tokens=10)

    logged = powertools_log.getvalue()
    assert "refused chat completion" in logged
    assert UpstreamFailed.__name__ in logged
    assert "bad gateway upstream" in logged  # the operator sees the upstream's reason
    assert "word word" not in logged  # never the partner's prompt


def test_no_key_value_or_prompt_reaches_logs_or_the_ledger(
    ai_stack: ProvisionedStack, powertools_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything any library logs, at every level, while a partner calls every route with its key in both headers
    caplog.set_level(logging.DEBUG)
    response = signup.handler(signup_event({"name": "Acme", "email": "leak@acme.example"}), LambdaContext())
    signed_up = json.loads(response["body"])
    key, key_id = signed_up["api_key"], signed_up["api_key_id"]
    for name, handler in (
        ("get_models.json", models.handler),
        ("get_usage.json", usage.handler),
        ("chat_completions.json", chat_handler),
    ):
        sent = event(name, key_id)
        sent["headers"] = {**sent["headers"], "Authorization": f"Bearer {key}", "x-api-key": key}
        sent["requestContext"]["identity"]["apiKey"] = key
        assert call(handler, sent).status == HTTPStatus.OK

    everything = powertools_log.getvalue() + caplog.text
    assert "completed chat" in everything  # the logs were captured at all
    assert key not in everything
    assert "Say hello to the metered API" not in everything
    items = boto3.client("dynamodb").scan(TableName=ai_stack.physical_ids["MeteringTable"])["Items"]
    assert items
    assert key not in json.dumps(items)
