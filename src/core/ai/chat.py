"""Chat completions: OpenAI's request shape (validated), the provider-neutral request and reply the model
providers work with, and OpenAI's response shape.

Supported: text, images as `data:` URLs in user messages, tools (function calling) and JSON output
(`response_format`), streamed or not (`stream`). Parameters that would change what the caller gets and that
no provider here implements (several choices, log probabilities, audio, logit biases and penalties...) are
refused with a 400 naming them rather than silently ignored; harmless ones (`user`, `seed`, `metadata`...)
are accepted and ignored.
"""

import base64
import binascii
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from core.errors import InvalidRequest
from core.tier_policy import CatalogModel

MAX_STOP_SEQUENCES = 4
# OpenAI's limits on tools, and its pattern for function names (Bedrock's toolSpec name allows the same).
MAX_TOOLS = 128
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
# Bedrock's documented limits for Converse (API reference, Message): 20 images, each at most 3.75 MB. We
# apply them to every provider, in decimal megabytes, so one request is accepted or refused the same way
# whichever provider the deployment uses.
MAX_IMAGES = 20
MAX_IMAGE_BYTES = 3_750_000
# Parameters OpenAI defines that we refuse when set: honouring them is not possible here, ignoring them
# would return something other than what the caller asked for.
UNSUPPORTED_PARAMETERS = (
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "presence_penalty",
    "audio",
    "prediction",
    "web_search_options",
)

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
ImageFormat = Literal["png", "jpeg", "gif", "webp"]


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _object_schema(self) -> "FunctionDefinition":
        if self.parameters is not None and self.parameters.get("type", "object") != "object":
            raise ValueError('parameters must be a JSON schema of type "object"')
        return self


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["function"]
    function: FunctionDefinition


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    arguments: str

    @model_validator(mode="after")
    def _arguments_are_an_object(self) -> "FunctionCall":
        if json_arguments(self.arguments) is None:
            raise ValueError("function.arguments must be a JSON object, as the model wrote it")
        return self


class ToolCallParam(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    # `schema` shadows a BaseModel attribute in pydantic, hence the alias.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('json_schema is required when type is "json_schema"')
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # A string, or a list of content parts: {"type": "text", "text": ...} and, in user messages,
    # {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}} (checked by model_request).
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _shape(self) -> "ChatMessage":
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if self.content is None and not self.tool_calls:
            raise ValueError("content is required (it may be null only in an assistant message with tool_calls)")
        parts = ("text", "image_url") if self.role == "user" else ("text",)
        for part in self.content if isinstance(self.content, list) else ():
            if part.get("type") not in parts:
                raise ValueError(f"{self.role} messages take content parts of type {' or '.join(parts)}")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise ValueError('a text content part needs "text"')
        return self

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part["text"]) for part in self.content if part["type"] == "text")
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
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

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
    _check_tools(request)
    return request


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    extra = request.model_extra or {}
    for name in UNSUPPORTED_PARAMETERS:
        if extra.get(name) not in (None, False, [], {}):
            raise InvalidRequest(f"{name} is not supported by this API", param=name)
    if extra.get("modalities") not in (None, ["text"]):
        raise InvalidRequest("only the text modality is supported by this API", param="modalities")
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
    if request.n not in (None, 1):
        raise InvalidRequest("only n = 1 is supported", param="n")


def _check_tools(request: ChatCompletionRequest) -> None:
    """What OpenAI checks about tools beyond their shape: unique names, a tool_choice naming a declared tool,
    and tool messages answering a call made earlier in the conversation."""
    names = [tool.function.name for tool in request.tools or ()]
    if len(set(names)) != len(names):
        raise InvalidRequest("tools: each function needs its own name", param="tools")
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise InvalidRequest(f"tool_choice: no tool named {choice.function.name!r} is in tools", param="tool_choice")
    if choice == "required" and not names:
        raise InvalidRequest("tool_choice: required needs tools", param="tool_choice")
    called: set[str] = set()
    for index, message in enumerate(request.messages):
        called.update(call.id for call in message.tool_calls or ())
        if message.role == "tool" and message.tool_call_id not in called:
            raise InvalidRequest(
                f"messages[{index}].tool_call_id: no earlier assistant message made this tool call",
                param=f"messages[{index}].tool_call_id",
            )


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
class Image:
    """An image the caller sent inline (a `data:` URL), its bytes checked against its format."""

    format: ImageFormat
    data: bytes
    detail: str | None = None  # OpenAI's "auto" | "low" | "high", passed on where the provider knows it

    def data_url(self) -> str:
        return f"data:image/{self.format};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made: its id, the function's name, and its arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def body(self) -> dict[str, Any]:
        """OpenAI's shape, in `message.tool_calls` of answers and of requests."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ChatTurn:
    """One message of the conversation. A user turn may carry images (after its text); an assistant turn
    the tool calls it made (its text may then be empty); a tool turn answers the call `tool_call_id`."""

    role: Literal["user", "assistant", "tool"]
    text: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is its JSON schema (None: it takes no arguments)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class ForcedTool:
    """tool_choice naming one function: the model must call it."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | ForcedTool


@dataclass(frozen=True)
class JsonOutput:
    """response_format json_object (no schema) or json_schema (a named schema the reply must follow)."""

    schema: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


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
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None  # None: the caller sent none (the provider's default, auto)
    parallel_tool_calls: bool | None = None
    response_format: JsonOutput | None = None

    @property
    def forced_tool(self) -> ToolSpec | None:
        """The function the model must call: named by tool_choice, or the only tool with `required`."""
        if isinstance(self.tool_choice, ForcedTool):
            return next((tool for tool in self.tools if tool.name == self.tool_choice.name), None)
        if self.tool_choice == "required" and len(self.tools) == 1:
            return self.tools[0]
        return None

    def texts(self) -> list[str]:
        """Every text the prompt carries: system, turns, the tool calls in the history, the tool definitions
        and the JSON schema asked for (the last three as the JSON text a provider is sent)."""
        texts = [*self.system, *(turn.text for turn in self.turns)]
        texts += [f"{call.name} {call.arguments}" for turn in self.turns for call in turn.tool_calls]
        texts += [_tool_text(tool) for tool in self.tools]
        if self.response_format is not None and self.response_format.schema is not None:
            texts.append(json.dumps(self.response_format.schema))
        return texts

    def image_count(self) -> int:
        return sum(len(turn.images) for turn in self.turns)


def _tool_text(tool: ToolSpec) -> str:
    parameters = None if tool.parameters is None else json.dumps(tool.parameters)
    return " ".join(part for part in (tool.name, tool.description, parameters) if part)


@dataclass(frozen=True)
class ModelReply:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float = 0.0
    tool_calls: tuple[ToolCall, ...] = ()


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
    # OpenAI's x-ratelimit-* headers for the answer (core.ai.rate_limits).
    headers: dict[str, str] = field(default_factory=dict)

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
                    "message": message_body(reply),
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


def message_body(reply: ModelReply) -> dict[str, Any]:
    """The answer's `choices[0].message`: with tool calls, `content` is null unless the model also wrote text."""
    if not reply.tool_calls:
        return {"role": "assistant", "content": reply.text, "refusal": None}
    return {
        "role": "assistant",
        "content": reply.text or None,
        "refusal": None,
        "tool_calls": [call.body() for call in reply.tool_calls],
    }


def model_request(request: ChatCompletionRequest, model: CatalogModel, default_max_tokens: int) -> ModelRequest:
    """The provider-neutral request: system and developer messages first, then the turns in order, and an
    output limit the model can honour (the tier's default is capped at the model's limit; a larger request is
    refused rather than silently shortened)."""
    system = tuple(message.text for message in request.messages if message.role in ("system", "developer"))
    turns = tuple(
        _turn(message, index)
        for index, message in enumerate(request.messages)
        if message.role not in ("system", "developer")
    )
    if not turns:
        raise InvalidRequest("messages must contain at least one user message", param="messages")
    if sum(len(turn.images) for turn in turns) > MAX_IMAGES:
        raise InvalidRequest(f"messages: at most {MAX_IMAGES} images in one request", param="messages")
    return ModelRequest(
        model=request.model,
        provider_model_id=model.provider_model_id,
        system=system,
        turns=turns,
        max_tokens=_max_tokens(request, model, default_max_tokens),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences,
        tools=tuple(
            ToolSpec(tool.function.name, tool.function.description, tool.function.parameters, tool.function.strict)
            for tool in request.tools or ()
        ),
        tool_choice=_tool_choice(request),
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=_json_output(request.response_format),
    )


def _turn(message: ChatMessage, index: int) -> ChatTurn:
    parts = message.content if isinstance(message.content, list) else []
    images = tuple(
        _image(part.get("image_url"), f"messages[{index}].content[{number}].image_url")
        for number, part in enumerate(parts)
        if part["type"] == "image_url"
    )
    calls = tuple(
        ToolCall(call.id, call.function.name, call.function.arguments or "{}") for call in message.tool_calls or ()
    )
    role: Literal["user", "assistant", "tool"] = message.role  # type: ignore[assignment]  # system: not a turn
    return ChatTurn(role, message.text, images, calls, message.tool_call_id)


# What each format's file starts with: the bytes must be the image the data: URL says they are.
_MAGIC: dict[ImageFormat, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),  # then 4 bytes of size, then WEBP
}


def _image(image_url: Any, param: str) -> Image:
    """A `data:image/...;base64,...` URL as checked image bytes. Remote URLs are refused: fetching them from
    here would let a caller make this function request any address it can reach (SSRF)."""
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise InvalidRequest(f'{param}: needs {{"url": "data:image/...;base64,..."}}', param=param)
    url, param = image_url["url"], f"{param}.url"
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"{param}: remote image URLs are not fetched; send the image inline as a data: URL", param=param
        )
    media_type, _, data = url.removeprefix("data:").partition(";base64,")
    image_format = media_type.removeprefix("image/").replace("jpg", "jpeg")
    if not url.startswith("data:image/") or not data or image_format not in _MAGIC:
        raise InvalidRequest(f"{param}: must be a base64 data: URL of a PNG, JPEG, GIF or WebP image", param=param)
    if len(data) > math.ceil(MAX_IMAGE_BYTES / 3) * 4 + 4:
        raise InvalidRequest(f"{param}: an image may be at most {MAX_IMAGE_BYTES} bytes", param=param)
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{param}: the image is not valid base64", param=param) from exc
    if len(decoded) > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{param}: an image may be at most {MAX_IMAGE_BYTES} bytes", param=param)
    checked: ImageFormat = image_format  # one of _MAGIC's keys
    if not decoded.startswith(_MAGIC[checked]) or (checked == "webp" and decoded[8:12] != b"WEBP"):
        raise InvalidRequest(f"{param}: the bytes are not a {checked.upper()} image", param=param)
    detail = image_url.get("detail")
    if detail not in (None, "auto", "low", "high"):
        raise InvalidRequest(f"{param[:-4]}.detail: must be auto, low or high", param=f"{param[:-4]}.detail")
    return Image(checked, decoded, detail)


def _tool_choice(request: ChatCompletionRequest) -> ToolChoice | None:
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        return ForcedTool(choice.function.name)
    return choice


def _json_output(response_format: ResponseFormat | None) -> JsonOutput | None:
    if response_format is None or response_format.type == "text":
        return None
    schema = response_format.json_schema
    if schema is None:
        return JsonOutput()
    return JsonOutput(schema.json_schema or {"type": "object"}, schema.name, schema.description, schema.strict)


def json_arguments(text: str) -> dict[str, Any] | None:
    """The JSON object in `text` (an empty text is an empty object), or None."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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


# An image costs a real model about 1,600 tokens at most once it is scaled down (Anthropic's Claude on Bedrock:
# width x height / 750 for images up to 1.15 megapixels); other models charge differently.
IMAGE_TOKENS_ESTIMATE = 1600


def estimate_prompt_tokens(request: ModelRequest) -> int:
    texts = request.texts()
    size = sum(len(text.encode("utf-8")) for text in texts)
    return (
        math.ceil(size / BYTES_PER_TOKEN_ESTIMATE)
        + TOKENS_PER_MESSAGE_ESTIMATE * len(texts)
        + IMAGE_TOKENS_ESTIMATE * request.image_count()
    )


def estimate_completion_tokens(text: str) -> int:
    """Completion tokens in generated text, by the same rule as prompts (one per 3 bytes of UTF-8, rounded up)."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)
