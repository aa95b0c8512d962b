"""Streamed chat completions (`stream: true`): the provider's events in OpenAI's `chat.completion.chunk` shape,
and their metering, which keeps the reservation rule of core.ai.metering.

A stream is admitted like a buffered completion (same checks, same reservation) and opened by pulling the
provider's first event, so every failure up to then is answered with its usual status code. From then on the
transport pulls one event at a time and ends the stream one of four ways (`StreamEnding`); `ChatStream.finish`
settles it exactly once: to the provider's reported usage when its StreamEnd carried one, otherwise to the prompt
estimate plus the completion tokens of the text generated so far, never more than the reservation.
"""

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from core.ai.chat import StreamEnd, StreamEvent, TextDelta, ToolCallDelta
from core.ai.metering import unreported_stream_usage
from core.ai.models import AiCaller
from core.ai.service import Admission, AiApi, RequestOutcome
from core.errors import UpstreamFailed
from core.observability import logger

# A buffered answer keeps API Gateway's 29 s rule of a buffered integration: 27 s in all, as when the function
# itself timed out at 27 s, of which the model gets UpstreamTimeoutSeconds (core.ai.settings).
BUFFERED_SECONDS = 27.0
# Kept back from a stream's deadline to send the error frame and settle before Lambda stops the function.
STREAM_END_MARGIN_SECONDS = 5.0

# How a stream ended: the provider's StreamEnd, the client went away, the deadline came, the provider failed.
StreamEnding = Literal["completed", "disconnected", "timed_out", "failed"]


def wants_stream(body: str | None) -> bool:
    """Whether a chat request asks for `stream: true`; anything unreadable is left to the buffered path's 400."""
    try:
        request = json.loads(body or "")
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("stream") is True


@dataclass(frozen=True)
class StreamUsage:
    prompt_tokens: int
    completion_tokens: int
    reported: bool  # the provider's own count, not the estimate from the text

    def body(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


@dataclass
class ChatStream:
    """One streamed completion, from its first event to its settlement."""

    api: AiApi
    admitted: Admission
    events: Iterator[StreamEvent]
    first: StreamEvent | None
    started: float
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    generated: list[str] = field(default_factory=list)
    end: StreamEnd | None = None
    usage: StreamUsage | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def include_usage(self) -> bool:
        options = self.admitted.request.stream_options
        return bool(options and options.include_usage)

    def finished(self) -> bool:
        return self.usage is not None

    def rate_limit_headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers as this stream's reservation left the ledger: they go out before the
        first byte, so the reservation is what they count (its settlement can only give tokens back)."""
        reservation = self.admitted.reservation
        return self.api.rate_limit_headers(self.admitted.caller, reservation.entry, reservation.reading)

    def next_event(self) -> StreamEvent | None:
        """The provider's next event (blocking), or None once its StreamEnd was given or the stream finished."""
        if self.end is not None or self.finished():
            return None
        event, self.first = (self.first, None) if self.first is not None else (self._pull(), None)
        if self.finished():
            # Finished (a disconnect, the deadline) while this pull waited: this event was never sent.
            self._close_provider()
            return None
        if isinstance(event, TextDelta):
            self.generated.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self.generated.append((event.name or "") + event.arguments)
        else:
            self.end = event
        return event

    def _pull(self) -> StreamEvent:
        event = next(self.events, None)
        if event is None:
            raise UpstreamFailed("the provider's stream ended without its StreamEnd")
        return event

    def finish(self, ending: StreamEnding) -> StreamUsage:
        """Settle the stream once (later calls return the same usage) and stop the provider's work."""
        with self._lock:
            if self.usage is None:
                self.usage = self._usage()
                self._settle(self.usage, ending)
        self._close_provider()
        return self.usage

    def _usage(self) -> StreamUsage:
        end = self.end
        if end is not None and end.prompt_tokens is not None and end.completion_tokens is not None:
            return StreamUsage(end.prompt_tokens, end.completion_tokens, reported=True)
        admitted = self.admitted
        completion = admitted.provider.estimate_completion_tokens("".join(self.generated))
        prompt_tokens, completion_tokens = unreported_stream_usage(
            admitted.reservation.tokens, admitted.prompt_tokens_estimate, completion
        )
        return StreamUsage(prompt_tokens, completion_tokens, reported=False)

    def _settle(self, usage: StreamUsage, ending: StreamEnding) -> None:
        admitted, meter = self.admitted, self.api.meter
        caller = admitted.caller
        # The ledger's settle is idempotent (a hold settles once), so a failed attempt is simply made again; if
        # that fails too the hold is given back rather than kept for the whole of a long stream's deadline.
        for attempt in (1, 2):
            try:
                meter.settle_tokens(admitted.reservation, usage.prompt_tokens, usage.completion_tokens)
                break
            except Exception:
                logger.warning("could not settle a streamed reservation", attempt=attempt, exc_info=True)
        else:
            try:
                meter.release(admitted.reservation)
            except Exception:
                # Given back by the next request that needs its tokens after its deadline (core.ai.metering).
                logger.exception("could not release a streamed reservation", api_key_id=caller.api_key_id)
        latency = (time.monotonic() - self.started) * 1000
        outcome: Literal["completed", "upstream_error"] = "upstream_error" if ending == "failed" else "completed"
        self.api.report(
            RequestOutcome(
                caller.tier, admitted.model.name, outcome, usage.prompt_tokens, usage.completion_tokens, latency
            )
        )
        logger.info(
            "streamed chat",
            ending=ending,
            tier=caller.tier,
            model=admitted.model.name,
            api_key_id=caller.api_key_id,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            usage_reported=usage.reported,
            reserved_tokens=admitted.reservation.tokens,
            finish_reason=self.end.finish_reason if self.end else None,
        )

    def _close_provider(self) -> None:
        close = getattr(self.events, "close", None)
        if close is None:
            return
        # ValueError: still inside a pull in another thread; next_event closes it when that pull returns.
        with contextlib.suppress(ValueError):
            close()

    # --- OpenAI's chunks -------------------------------------------------------------------------------------

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice])

    def role_chunk(self) -> dict[str, Any]:
        """The first chunk: the role, as OpenAI sends it before any content."""
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def event_chunk(self, event: StreamEvent) -> dict[str, Any]:
        if isinstance(event, TextDelta):
            return self.chunk({"content": event.text})
        if isinstance(event, ToolCallDelta):
            return self.chunk({"tool_calls": [tool_call_delta(event)]})
        return self.chunk({}, event.finish_reason)

    def usage_chunk(self, usage: StreamUsage) -> dict[str, Any]:
        """stream_options.include_usage: the one chunk with no choices, after the last choice chunk."""
        body = self._chunk([])
        body["usage"] = usage.body()
        return body

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.admitted.model.name,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = None  # OpenAI: every chunk but the last carries usage null when it was asked for
        return body


def tool_call_delta(event: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's `delta.tool_calls[]` item: id, type and name on a call's first piece, arguments on every piece."""
    call: dict[str, Any] = {"index": event.index}
    function: dict[str, str] = {}
    if event.id is not None:
        call["id"], call["type"] = event.id, "function"
    if event.name is not None:
        function["name"] = event.name
    function["arguments"] = event.arguments
    call["function"] = function
    return call


def open_stream(api: AiApi, caller: AiCaller, body: str | None, seconds_left: float) -> ChatStream:
    """Admit a streamed completion and pull the provider's first event (blocking); any failure until then
    releases the reservation and is raised, to be answered with its status code like a buffered one."""
    admitted = api.admit(caller, body, seconds_left)
    started = time.monotonic()
    events: Iterator[StreamEvent] | None = None
    try:
        events = admitted.provider.stream(
            admitted.prompt, api.upstream_timeout(seconds_left - STREAM_END_MARGIN_SECONDS)
        )
        first = next(events, None)
        if first is None:
            raise UpstreamFailed("the provider's stream ended without its StreamEnd")
    except BaseException:
        if events is not None and hasattr(events, "close"):
            events.close()
        api.meter.release(admitted.reservation)
        latency = (time.monotonic() - started) * 1000
        api.report(RequestOutcome(caller.tier, admitted.model.name, "upstream_error", upstream_latency_ms=latency))
        raise
    return ChatStream(api, admitted, events, first, started)
