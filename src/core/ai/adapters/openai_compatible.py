"""Adapter for any OpenAI-compatible upstream (OpenAI, vLLM, LiteLLM, Ollama...): `POST {base}/chat/completions`
over a pooled urllib3 connection (the ModelProvider port).

The upstream's own errors map to the domain's: its 400/413/422 are the caller's request (400), its 429 is
throttling (429, Retry-After kept), a timeout is 504, and anything else (our key refused, a model id the
upstream does not know, its 5xx, a body we cannot read) is 502. Without a usage object in the answer, the
call is charged at the prompt estimate plus 1 token per 3 bytes of reply, at most max_tokens.
"""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from core.ai.chat import (
    FinishReason,
    ModelReply,
    ModelRequest,
    StreamEvent,
    estimate_completion_tokens,
    estimate_prompt_tokens,
)
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

CONNECT_TIMEOUT_SECONDS = 3.0
_FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "content_filter"}
_REJECTED = {400, 413, 422}
_TIMED_OUT = {408, 504}


class OpenAICompatible:
    """The ModelProvider port on an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str | None] = lambda: None,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._api_key = api_key
        # Kept across invocations of a warm function: one TLS handshake, not one per request.
        self._pool = pool or urllib3.PoolManager(retries=False, maxsize=4)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return estimate_prompt_tokens(request)

    def estimate_completion_tokens(self, text: str) -> int:
        return estimate_completion_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        raise UpstreamFailed("streaming is not implemented for this provider yet")

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=json.dumps(chat_request(request)).encode(),
                headers=headers,
                timeout=urllib3.Timeout(total=timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds)),
                retries=False,
                redirect=False,
            )
        except NewConnectionError as exc:  # before TimeoutError: urllib3 makes it a subclass of ConnectTimeoutError
            raise UpstreamFailed(f"the upstream could not be reached: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise UpstreamTimedOut(timeout_seconds) from exc
        except HTTPError as exc:
            raise UpstreamFailed(f"the upstream could not be reached: {type(exc).__name__}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise _upstream_error(response.status, response.data, response.headers.get("Retry-After"), timeout_seconds)
        try:
            answer = json.loads(response.data)
            return reply_from_chat(answer, request, latency_ms)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamFailed("the upstream answered with a body that is not a chat completion") from exc


def chat_request(request: ModelRequest) -> dict[str, Any]:
    messages = [{"role": "system", "content": text} for text in request.system]
    messages += [{"role": turn.role, "content": turn.text} for turn in request.turns]
    # max_tokens, not max_completion_tokens: every compatible server knows the older name.
    body: dict[str, Any] = {
        "model": request.provider_model_id,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "stream": False,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    return body


def reply_from_chat(answer: dict[str, Any], request: ModelRequest, latency_ms: float) -> ModelReply:
    choice = answer["choices"][0]
    text = choice["message"].get("content") or ""
    if not isinstance(text, str):
        raise TypeError("message.content is not a string")
    usage = answer.get("usage") or {}
    if "prompt_tokens" in usage and "completion_tokens" in usage:
        prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    else:
        prompt_tokens = estimate_prompt_tokens(request)
        completion_tokens = min(request.max_tokens, estimate_completion_tokens(text))
    return ModelReply(
        text=text,
        finish_reason=_FINISH_REASONS.get(str(choice.get("finish_reason")), "stop"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
    )


def _upstream_error(status: int, body: bytes, retry_after: str | None, timeout_seconds: float) -> Exception:
    if status == 429:
        return UpstreamThrottled(_seconds(retry_after))
    if status in _TIMED_OUT:
        return UpstreamTimedOut(timeout_seconds)
    if status in _REJECTED:
        return UpstreamRejected(f"the model refused the request: {_error_message(body)}")
    return UpstreamFailed(f"the upstream answered {status}: {_error_message(body)}")


def _error_message(body: bytes) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "no error message"
    return str(message)[:500]


def _seconds(retry_after: str | None) -> int:
    try:
        return max(1, min(int(float(retry_after or "1")), 60))
    except ValueError:
        return 1
