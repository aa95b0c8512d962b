"""The official `openai` SDK, unchanged, against the chat function's ASGI app served by uvicorn on 127.0.0.1 (as
src/run.sh serves it) on the emulated stack: stream=True with include_usage, a client that goes away after one
chunk, twenty parallel streams near a token budget, errors before and after the first byte.

The SDK plays the client and `default_headers` play the Lambda Web Adapter: the request context API Gateway
would pass on (the caller's key id, the request's time) and Lambda's deadline."""

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http import HTTPStatus

import openai
import pytest
import uvicorn

from core.ai.chat import StreamEnd, TextDelta
from core.errors import UpstreamFailed
from handlers import chat_completions
from offline.provision import ProvisionedStack
from offline.template import load_template
from tests.fakes import ScriptedModel
from tests.integration.ai.test_ai_api import PARAMETERS, Partner, _clear_caches, ledger, sign_up


@contextmanager
def served() -> Iterator[str]:
    """The app on a free port of 127.0.0.1, as run.sh runs it (uvicorn, no access log): its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(chat_completions.app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def base_url(ai_stack: ProvisionedStack) -> Iterator[str]:
    with served() as url:
        yield url


def client(base_url: str, partner: Partner) -> openai.OpenAI:
    now_ms = int(time.time() * 1000)
    request_context = {
        "requestId": str(uuid.uuid4()),
        "requestTimeEpoch": now_ms,
        "identity": {"apiKeyId": partner.api_key_id},
    }
    return openai.OpenAI(
        base_url=base_url,
        api_key="the key API Gateway checked",
        max_retries=0,
        default_headers={
            "x-amzn-request-context": json.dumps(request_context),
            "x-amzn-lambda-context": json.dumps({"request_id": "sdk-test", "deadline": now_ms + 900_000}),
        },
    )


def message(words: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": " ".join(f"w{index}" for index in range(words))}]


def test_the_sdk_streams_the_buffered_answer_then_the_usage(ai_stack: ProvisionedStack, base_url: str) -> None:
    # Given a free partner and the SDK's buffered answer to a request
    partner = sign_up()
    sdk = client(base_url, partner)
    buffered = sdk.chat.completions.create(model="nova-micro", messages=message(6), max_tokens=20)  # type: ignore[arg-type]

    # When it streams the same request with the usage
    stream = sdk.chat.completions.create(
        model="nova-micro",
        messages=message(6),  # type: ignore[arg-type]
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    received = list(stream)

    # Then several content chunks concatenate to the buffered answer, and the last chunk has the usage only
    *choice_chunks, last = received
    deltas = [chunk.choices[0].delta.content for chunk in choice_chunks if chunk.choices[0].delta.content]
    assert len(deltas) == 6
    assert "".join(deltas) == buffered.choices[0].message.content
    assert choice_chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in choice_chunks)
    assert last.choices == []
    assert last.usage is not None and buffered.usage is not None
    assert last.usage.model_dump() == buffered.usage.model_dump()
    # And the ledger has exactly those tokens once more, with nothing reserved
    counters = ledger(ai_stack, partner)
    assert counters["committed_tokens"] == 2 * last.usage.total_tokens
    assert counters["reserved_tokens"] == 0


def test_a_client_that_reads_one_chunk_and_goes_away_is_settled_within_seconds(
    ai_stack: ProvisionedStack, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the offline provider writing a word every 100 ms, and a 30-word prompt (30 + 30 reserved)
    monkeypatch.setenv("OFFLINE_STREAM_CHUNK_DELAY_MS", "100")
    _clear_caches()
    partner = sign_up()
    stream = client(base_url, partner).chat.completions.create(
        model="nova-micro",
        messages=message(30),  # type: ignore[arg-type]
        max_tokens=30,
        stream=True,
    )

    # When the client reads one content chunk and closes the connection
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    stream.close()

    # Then within a few seconds the reservation is released, and the charge is at least the prompt and at most
    # the reservation (not the whole reply: the provider was stopped)
    deadline = time.monotonic() + 5
    while ledger(ai_stack, partner)["reserved_tokens"] and time.monotonic() < deadline:
        time.sleep(0.1)
    counters = ledger(ai_stack, partner)
    assert counters["reserved_tokens"] == 0
    assert 30 <= counters["committed_tokens"] < 60


def test_twenty_parallel_streams_near_the_budget_never_settle_above_it(
    ai_stack: ProvisionedStack, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a free partner (budget 200) with 100 tokens left, and streams that each reserve and use 10 tokens
    # (5 words in, 5 out), overlapping (20 ms between chunks)
    monkeypatch.setenv("OFFLINE_STREAM_CHUNK_DELAY_MS", "20")
    _clear_caches()
    partner = sign_up()
    sdk = client(base_url, partner)
    sdk.chat.completions.create(model="nova-micro", messages=message(50), max_tokens=50)  # type: ignore[arg-type]

    def attempt(_: int) -> str:
        try:
            stream = sdk.chat.completions.create(
                model="nova-micro",
                messages=message(5),  # type: ignore[arg-type]
                max_tokens=5,
                stream=True,
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.RateLimitError as exc:
            assert exc.status_code == HTTPStatus.TOO_MANY_REQUESTS
            return "refused"
        assert text == "w0 w1 w2 w3 w4"  # each caller got its own whole answer
        return "served"

    # When twenty stream at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))

    # Then exactly the ten that fit are served, and the budget is spent to the token, not beyond
    assert outcomes.count("served") == 10
    counters = ledger(ai_stack, partner)
    assert (counters["committed_tokens"], counters["reserved_tokens"]) == (200, 0)


def test_an_error_before_the_first_byte_is_the_sdks_usual_exception(ai_stack: ProvisionedStack, base_url: str) -> None:
    partner = sign_up()

    with pytest.raises(openai.RateLimitError) as refused:
        client(base_url, partner).chat.completions.create(
            model="nova-micro",
            messages=message(5),  # type: ignore[arg-type]
            max_tokens=500,
            stream=True,
        )

    assert refused.value.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.value.code == "insufficient_quota"


def test_a_provider_failure_mid_stream_is_raised_by_the_sdk(
    ai_stack: ProvisionedStack, base_url: str, provider: list[ScriptedModel]
) -> None:
    # Given a provider that fails after one word
    provider.append(ScriptedModel([TextDelta("one"), UpstreamFailed("connection reset"), StreamEnd("stop")]))
    partner = sign_up()
    stream = client(base_url, partner).chat.completions.create(
        model="nova-micro",
        messages=message(3),  # type: ignore[arg-type]
        stream=True,
    )

    # When the SDK reads the stream, it raises the error frame, after the word it got
    received: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)

    assert received == ["", "one"]
    assert "failed during the stream" in failed.value.message
    assert ledger(ai_stack, partner)["reserved_tokens"] == 0


def test_offline_stream_chunk_delay_makes_delivery_visibly_incremental(
    ai_stack: ProvisionedStack, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the chat function's environment from the template with OfflineStreamChunkDelayMs=100
    template = load_template(overrides={**PARAMETERS, "OfflineStreamChunkDelayMs": "100"})
    variables = template.resources["ChatCompletionsFunction"]["Properties"]["Environment"]["Variables"]
    monkeypatch.setenv("OFFLINE_STREAM_CHUNK_DELAY_MS", str(variables["OFFLINE_STREAM_CHUNK_DELAY_MS"]))
    _clear_caches()
    partner = sign_up()

    # When the SDK streams a five-word reply, noting when each word arrives
    arrivals = []
    stream = client(base_url, partner).chat.completions.create(
        model="nova-micro",
        messages=message(5),  # type: ignore[arg-type]
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())

    # Then the words came one by one, 100 ms apart, not as one buffered body
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.35
