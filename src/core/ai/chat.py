"""Chat completions: OpenAI's request shape (validated), the provider-neutral request and reply the model
providers work with, and OpenAI's response shape.

Only text is supported. Parameters that would change what the caller gets and that no provider here
implements (tools, response formats, several choices, log probabilities) are refused with a
400 rather than silently ignored; harmless ones (`user`, `seed`, `metadata`...) are accepted and ignored.
"""

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from core.errors import InvalidRequest
from core.tier_policy import CatalogModel

MAX_STOP_SEQUENCES = 4
# Parameters OpenAI defines that we refuse when set: honouring them is not possible here, ignoring them
# would return something other than what the caller asked for.
UNSUPPORTED_PARAMETERS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "audio",
    "prediction",
    "web_search_options",
)

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    # A string, or a list of content parts of which only {"type": "text", "text": ...} is supported.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> "ChatMessage":
        if self.content is None:
            raise ValueError("content is required (tool calls are not supported)")
        if isinstance(self.content, list):
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError('only text content parts ({"type": "text", "text": ...}) are supported')
        return self

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part["text"]) for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`: with include_usage, one more chunk before [DONE] carries the usage."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    include_usage: StrictBool | None = None


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's `POST /v1/chat/completions` body that we read; the rest are kept as extras."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=1, max_length=256)
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    # Strict: the transport decides on the JSON `true` alone (core.ai.streaming.wants_stream).
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1)

    @property
    def requested_max_tokens(self) -> tuple[str, int] | None:
        """The output limit the caller asked for, and the parameter it used: max_completion_tokens replaces
        the deprecated max_tokens, and a client may still send either."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        if self.max_tokens is not None:
            return "max_tokens", self.max_tokens
        return None

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def parse_chat_request(body: str | None) -> ChatCompletionRequest:
    """The request, or InvalidRequest naming the first offending field as OpenAI's `param`."""
    if not body:
        raise InvalidRequest("request body is required")
    try:
        request = ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    _refuse_unsupported(request)
    return request


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    extra = request.model_extra or {}
    for name in UNSUPPORTED_PARAMETERS:
        if extra.get(name) not in (None, False, [], {}):
            raise InvalidRequest(f"{name} is not supported by this API", param=name)
    response_format = extra.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise InvalidRequest("only the text response_format is supported by this API", param="response_format")
    if extra.get("modalities") not in (None, ["text"]):
        raise InvalidRequest("only the text modality is supported by this API", param="modalities")
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
    if request.n not in (None, 1):
        raise InvalidRequest("only n = 1 is supported", param="n")


def _invalid(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors()
    if any(error["type"] == "json_invalid" for error in errors):
        return InvalidRequest("request body is not valid JSON")
    if any(error["type"] == "model_type" and not error["loc"] for error in errors):
        return InvalidRequest("request body must be a JSON object")
    first = errors[0]
    param = _param(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "field required"
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def _param(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's location as OpenAI spells a parameter (`messages[0].content`), without union branch names."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool", "list", "dict"):
            continue
        else:
            text += f".{part}" if text else part
    return text or None


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class ModelRequest:
    """What a provider is asked: its own model id, the conversation, and bounded output."""

    model: str  # the public name the caller used
    provider_model_id: str
    system: tuple[str, ...]
    turns: tuple[ChatTurn, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()

    def texts(self) -> list[str]:
        return [*self.system, *(turn.text for turn in self.turns)]


@dataclass(frozen=True)
class ModelReply:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float = 0.0


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text, in the order the provider produced it."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call `index` (0, 1... in the reply): its first piece carries the call's id and function
    name, every piece may carry more of its JSON `arguments` text (OpenAI's `delta.tool_calls[]`)."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a streamed reply: why it ended, and the usage the provider reported for the whole
    call (None when it reported none: the stream is then settled from the deltas, core.ai.metering)."""

    finish_reason: FinishReason
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# What ModelProvider.stream yields: deltas, then exactly one StreamEnd.
StreamEvent = TextDelta | ToolCallDelta | StreamEnd


@dataclass(frozen=True)
class Completion:
    """A served chat completion, ready to be sent in OpenAI's shape."""

    model: str
    reply: ModelReply
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def body(self) -> dict[str, Any]:
        reply = self.reply
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
            "system_fingerprint": None,
        }


def model_request(request: ChatCompletionRequest, model: CatalogModel, default_max_tokens: int) -> ModelRequest:
    """The provider-neutral request: system and developer messages first, then the turns in order, and an
    output limit the model can honour (the tier's default is capped at the model's limit; a larger request is
    refused rather than silently shortened)."""
    system = tuple(message.text for message in request.messages if message.role in ("system", "developer"))
    turns = tuple(
        ChatTurn(role="user" if message.role == "user" else "assistant", text=message.text)
        for message in request.messages
        if message.role in ("user", "assistant")
    )
    if not turns:
        raise InvalidRequest("messages must contain at least one user message", param="messages")
    return ModelRequest(
        model=request.model,
        provider_model_id=model.provider_model_id,
        system=system,
        turns=turns,
        max_tokens=_max_tokens(request, model, default_max_tokens),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences,
    )


def _max_tokens(request: ChatCompletionRequest, model: CatalogModel, default_max_tokens: int) -> int:
    requested = request.requested_max_tokens
    if requested is None:
        return min(default_max_tokens, model.max_output_tokens)
    param, value = requested
    if value > model.max_output_tokens:
        # Also keeps a 40-digit max_tokens out of the ledger, whose numbers hold 38 digits.
        raise InvalidRequest(f"{param}: {model.name} writes at most {model.max_output_tokens} tokens", param=param)
    return value


# Reservation estimate for real models (see README, "Token budgets"): one token per 3 bytes of UTF-8 text,
# rounded up, plus 8 per message for the chat template. English averages about 4 characters per token,
# so this usually overestimates; it is an estimate, not a bound, for every tokenizer.
BYTES_PER_TOKEN_ESTIMATE = 3
TOKENS_PER_MESSAGE_ESTIMATE = 8


def estimate_prompt_tokens(request: ModelRequest) -> int:
    texts = request.texts()
    size = sum(len(text.encode("utf-8")) for text in texts)
    return math.ceil(size / BYTES_PER_TOKEN_ESTIMATE) + TOKENS_PER_MESSAGE_ESTIMATE * len(texts)


def estimate_completion_tokens(text: str) -> int:
    """Completion tokens in generated text, by the same rule as prompts (one per 3 bytes of UTF-8, rounded up)."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)
