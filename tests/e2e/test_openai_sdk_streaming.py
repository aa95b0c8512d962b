"""Streaming chat completions with the official OpenAI SDK against the offline stack, unchanged (only
base_url and api_key): the local gateway passes the streaming function's chunks on as they are produced, and
the token ledger settles every stream exactly, including one whose client goes away."""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

# The offline provider waits CHUNK_DELAY between words, so incremental delivery can be seen; the throttle and
# quota are out of the way; a free key's budget (150 tokens a day) is what twenty parallel streams contend for.
CHUNK_DELAY_MS = 150
TOKEN_BUDGET = 150
STREAM_PARAMS = (
    f"OfflineStreamChunkDelayMs={CHUNK_DELAY_MS} FreeRateLimit=100 FreeBurstLimit=100 FreeQuotaLimit=1000 "
    f"FreeTokenBudget={TOKEN_BUDGET} FreeDefaultMaxTokens=16"
)
PROMPT = "one two three four five six"  # the offline provider answers these six words, one chunk each


@pytest.fixture(scope="module")
def stream_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("stream") / "state", STREAM_PARAMS)
    yield stack
    stack.stop()


def sign_up(stack: RunningStack) -> str:
    answer = http(
        "POST", stack.url("/signup"), body={"name": "Streamer", "email": f"s-{uuid.uuid4().hex[:8]}@example.com"}
    )
    assert answer.status == HTTPStatus.CREATED, answer
    return str(answer.body["api_key"])


def tokens(stack: RunningStack, api_key: str) -> dict[str, Any]:
    answer = http("GET", stack.url("/v1/usage"), headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status == HTTPStatus.OK, answer
    return dict(answer.body["tokens"])


def client_for(stack: RunningStack, api_key: str) -> OpenAI:
    return OpenAI(base_url=stack.url("/v1"), api_key=api_key, timeout=30, max_retries=0)


def test_a_stream_is_the_buffered_answer_in_chunks_then_its_usage_and_is_metered_exactly(
    stream_stack: RunningStack,
) -> None:
    # Given a partner, and the buffered answer to a request
    api_key = sign_up(stream_stack)
    client = client_for(stream_stack, api_key)
    messages: Any = [{"role": "user", "content": PROMPT}]
    buffered = client.chat.completions.create(model="nova-micro", messages=messages, max_tokens=10)
    before = tokens(stream_stack, api_key)

    # When the same request is streamed with include_usage
    chunks = list(
        client.chat.completions.create(
            model="nova-micro", messages=messages, max_tokens=10, stream=True, stream_options={"include_usage": True}
        )
    )

    # Then several content chunks concatenate to the buffered answer, the role comes first and the finish
    # reason last, then one usage chunk with no choices; no other chunk carries usage
    content = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(content) >= 3
    assert "".join(content) == buffered.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and buffered.usage is not None
    assert usage_chunk.usage.total_tokens == buffered.usage.total_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])
    # And the ledger charged exactly that many tokens, and holds nothing
    after = tokens(stream_stack, api_key)
    assert after["used"] - before["used"] == usage_chunk.usage.total_tokens
    assert after["reserved"] == 0


def test_chunks_arrive_as_they_are_produced(stream_stack: RunningStack) -> None:
    # Given a stream whose six words are produced CHUNK_DELAY_MS apart
    client = client_for(stream_stack, sign_up(stream_stack))
    stream = client.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": PROMPT}], max_tokens=10, stream=True
    )

    # When the client reads it chunk by chunk
    arrivals = [time.monotonic() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]

    # Then the first word arrived well before the last: the body was not buffered
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 0.8 * 5 * CHUNK_DELAY_MS / 1000


def test_a_client_that_goes_away_mid_stream_is_charged_what_was_generated_and_nothing_stays_reserved(
    stream_stack: RunningStack,
) -> None:
    # Given a long answer (40 words, 6 s at the chunk delay), reserving prompt + max_tokens
    api_key = sign_up(stream_stack)
    client = client_for(stream_stack, api_key)
    words = " ".join(f"w{n}" for n in range(40))
    stream = client.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": words}], max_tokens=40, stream=True
    )

    # When the client reads one chunk and closes the connection
    next(iter(stream))
    stream.close()

    # Then within a few seconds the reservation is released, and the charge is at least the prompt and at most
    # the reservation
    deadline = time.monotonic() + 10
    standing = tokens(stream_stack, api_key)
    while standing["reserved"] and time.monotonic() < deadline:
        time.sleep(0.2)
        standing = tokens(stream_stack, api_key)
    assert standing["reserved"] == 0
    assert 40 <= standing["used"] <= 40 + 40


def test_twenty_parallel_streams_near_the_budget_never_settle_above_it(stream_stack: RunningStack) -> None:
    # Given one key, and twenty streams that each reserve 6 + 16 tokens of its 150 and use 12 (more than fit)
    api_key = sign_up(stream_stack)
    client = client_for(stream_stack, api_key)

    def stream_one(_: int) -> str:
        try:
            stream = client.chat.completions.create(
                model="nova-micro", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.RateLimitError:
            return "refused"

    # When they all run at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(stream_one, range(20)))

    # Then the budget admitted some and refused the rest before their first byte, and the ledger never
    # went past it
    assert "refused" in answers and PROMPT in answers
    standing = tokens(stream_stack, api_key)
    assert standing["reserved"] == 0
    assert standing["used"] <= TOKEN_BUDGET
    assert standing["used"] == answers.count(PROMPT) * 12
