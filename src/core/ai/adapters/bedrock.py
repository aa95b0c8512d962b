"""Amazon Bedrock adapter: chat completions through the Converse and ConverseStream APIs (the ModelProvider
port).

OpenAI's system and developer messages become Converse's `system` blocks; consecutive turns of one role
are merged into one message, since Converse wants user and assistant to alternate. Tools become
`toolConfig` (tool_choice auto -> `auto`, required -> `any`, a named function -> `tool`); Converse has no
"none", so with tool_choice none the tools are not sent, and tool calls and results already in the
conversation are then sent as text (Converse refuses toolUse and toolResult blocks without a toolConfig).
A `tool` message is a `toolResult` block in a user message; images are image blocks with their bytes.
parallel_tool_calls false keeps only the model's first tool call (Converse cannot ask for one at most).
response_format json_schema is Converse's structured output (`outputConfig.textFormat`); json_object, which
has no schema, is a system instruction to answer with one JSON object.

Bedrock's errors become the domain's upstream errors: throttling 429, validation 400, timeouts 504, the rest
502, whether Bedrock answers them before the stream or as an exception event inside it. A model the
deployment cannot call (no access, an unknown id, a plain id where Bedrock wants an inference profile) is the
operator's to fix: 502 to the partner, and a message for the operator's log saying what to change.
"""

import json
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from urllib3.exceptions import HTTPError as ConnectionFailure
from urllib3.exceptions import ReadTimeoutError as StreamReadTimeout

from core.ai.chat import (
    ChatTurn,
    FinishReason,
    ForcedTool,
    ModelReply,
    ModelRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    estimate_completion_tokens,
    estimate_prompt_tokens,
    json_arguments,
)
from core.aws import bedrock_runtime_client
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

# Converse's stopReason -> OpenAI's finish_reason.
FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Error codes as Bedrock answers them; inside a stream, botocore names them after the event (throttlingException).
_THROTTLED = {"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"}
_TIMED_OUT = {"ModelTimeoutException"}
_REJECTED = {"ValidationException"}
# What to change when Bedrock refuses the deployment's model rather than the caller's request.
_OPERATOR_FIXES = {
    "AccessDeniedException": (
        "the function's IAM role (ChatBedrockPolicy) or an SCP denies bedrock:InvokeModel on it, or the model is "
        "not available to this account in this Region"
    ),
    "ResourceNotFoundException": "no such model or inference profile in this Region: check the Models parameter",
}
# A plain model id where the Region serves the model only through an inference profile (Nova outside us-east-1).
_ON_DEMAND_UNSUPPORTED = "on-demand throughput"
_ON_DEMAND_FIX = (
    "Bedrock serves it here only through an inference profile: set Models to the geography's profile id "
    "(us., eu. or apac. + the model id), or leave Models empty for this Region's defaults"
)
JSON_OBJECT_INSTRUCTION = "Answer with one valid JSON object and nothing else: no prose, no code fence."


class BedrockConverse:
    """The ModelProvider port on Bedrock's Converse API."""

    def __init__(self, client: "BedrockRuntimeClient | None" = None, read_timeout_seconds: float = 20.0) -> None:
        self._client = client or bedrock_runtime_client(read_timeout_seconds)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return estimate_prompt_tokens(request)

    def estimate_completion_tokens(self, text: str) -> int:
        return estimate_completion_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Generator[StreamEvent]:
        try:
            events = self._client.converse_stream(**converse_request(request))["stream"]
        except (ClientError, BotoCoreError) as exc:
            raise _bedrock_error(exc, request.provider_model_id, timeout_seconds) from exc
        try:
            yield from _stream_events(events, request)
        except (ClientError, BotoCoreError) as exc:
            raise _bedrock_error(exc, request.provider_model_id, timeout_seconds) from exc
        except StreamReadTimeout as exc:  # the event stream is read through urllib3, not botocore's send
            raise UpstreamTimedOut(timeout_seconds) from exc
        except ConnectionFailure as exc:
            raise UpstreamFailed(f"the Bedrock stream broke: {type(exc).__name__}") from exc
        finally:
            events.close()  # the caller went away, or the stream ended: either way the connection is done

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        started = time.perf_counter()
        try:
            answer = self._client.converse(**converse_request(request))
        except (ClientError, BotoCoreError) as exc:
            raise _bedrock_error(exc, request.provider_model_id, timeout_seconds) from exc
        return reply_from_converse(answer, (time.perf_counter() - started) * 1000, request)


def converse_request(request: ModelRequest) -> dict[str, Any]:
    """Converse's request for `request` (botocore's bedrock-runtime model; pinned by Stubber in tests)."""
    tool_config = _tool_config(request)
    messages: list[dict[str, Any]] = []
    for turn in request.turns:
        role = "assistant" if turn.role == "assistant" else "user"
        content = _content(turn, tools_sent=tool_config is not None)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(content)
        else:
            messages.append({"role": role, "content": content})
    inference: dict[str, Any] = {"maxTokens": request.max_tokens}
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    converse: dict[str, Any] = {
        "modelId": request.provider_model_id,
        "messages": messages,
        "inferenceConfig": inference,
    }
    system = [{"text": text} for text in request.system if text]
    json_output = request.response_format
    if json_output is not None and json_output.schema is None:
        system.append({"text": JSON_OBJECT_INSTRUCTION})
    if system:
        converse["system"] = system
    if tool_config is not None:
        converse["toolConfig"] = tool_config
    if json_output is not None and json_output.schema is not None:
        schema: dict[str, Any] = {"schema": json.dumps(json_output.schema), "name": json_output.name or "response"}
        if json_output.description:
            schema["description"] = json_output.description
        converse["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
    return converse


def _content(turn: ChatTurn, tools_sent: bool) -> list[dict[str, Any]]:
    """A turn's content blocks. Without a toolConfig, Converse refuses tool blocks: they are sent as text."""
    if turn.role == "tool":
        if not tools_sent:
            return [{"text": f"[result of tool call {turn.tool_call_id}]: {turn.text}"}]
        return [{"toolResult": {"toolUseId": turn.tool_call_id, "content": [{"text": turn.text}]}}]
    blocks: list[dict[str, Any]] = [{"text": turn.text}] if turn.text or not (turn.images or turn.tool_calls) else []
    blocks += [{"image": {"format": image.format, "source": {"bytes": image.data}}} for image in turn.images]
    for call in turn.tool_calls:
        if tools_sent:
            arguments = json_arguments(call.arguments) or {}
            blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}})
        else:
            blocks.append({"text": f"[tool call {call.id}: {call.name}({call.arguments})]"})
    return blocks


def _tool_config(request: ModelRequest) -> dict[str, Any] | None:
    if not request.tools or request.tool_choice == "none":
        return None
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {
            "name": tool.name,
            "inputSchema": {"json": tool.parameters or {"type": "object", "properties": {}}},
        }
        if tool.description:
            spec["description"] = tool.description
        if tool.strict:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if isinstance(request.tool_choice, ForcedTool):
        config["toolChoice"] = {"tool": {"name": request.tool_choice.name}}
    elif request.tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif request.tool_choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


def reply_from_converse(answer: Any, latency_ms: float, request: ModelRequest | None = None) -> ModelReply:
    content = ((answer.get("output") or {}).get("message") or {}).get("content") or []
    usage = answer.get("usage") or {}
    calls = tuple(
        ToolCall(block["toolUse"]["toolUseId"], block["toolUse"]["name"], json.dumps(block["toolUse"].get("input", {})))
        for block in content
        if "toolUse" in block
    )
    if request is not None and request.parallel_tool_calls is False:
        calls = calls[:1]
    return ModelReply(
        text="".join(block["text"] for block in content if "text" in block),
        finish_reason=FINISH_REASONS.get(str(answer.get("stopReason")), "stop"),
        prompt_tokens=int(usage.get("inputTokens", 0)),
        completion_tokens=int(usage.get("outputTokens", 0)),
        latency_ms=float((answer.get("metrics") or {}).get("latencyMs", latency_ms)),
        tool_calls=calls,
    )


def _stream_events(events: Any, request: ModelRequest) -> Iterator[StreamEvent]:
    """ConverseStream's events as the port's: text and tool-use deltas, then a StreamEnd with the usage of
    the final `metadata` event (None if the stream ended without one)."""
    tool_indexes: dict[int, int] = {}  # Converse's contentBlockIndex -> OpenAI's tool_calls index
    finish_reason: FinishReason = "stop"
    usage: dict[str, Any] = {}
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool_use = start["start"].get("toolUse")
            if tool_use is not None and (request.parallel_tool_calls is not False or not tool_indexes):
                tool_indexes[start["contentBlockIndex"]] = len(tool_indexes)
                yield ToolCallDelta(
                    tool_indexes[start["contentBlockIndex"]], id=tool_use["toolUseId"], name=tool_use["name"]
                )
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block["delta"]
            if "text" in delta:
                yield TextDelta(delta["text"])
            elif "toolUse" in delta and block["contentBlockIndex"] in tool_indexes:
                yield ToolCallDelta(tool_indexes[block["contentBlockIndex"]], delta["toolUse"]["input"])
        elif "messageStop" in event:
            finish_reason = FINISH_REASONS.get(event["messageStop"]["stopReason"], "stop")
        elif "metadata" in event:
            usage = event["metadata"].get("usage") or {}
    if "inputTokens" in usage and "outputTokens" in usage:
        yield StreamEnd(finish_reason, int(usage["inputTokens"]), int(usage["outputTokens"]))
    else:
        yield StreamEnd(finish_reason)


def _bedrock_error(exc: ClientError | BotoCoreError, model_id: str, timeout_seconds: float) -> Exception:
    if isinstance(exc, ClientError):
        return _upstream_error(exc, model_id, timeout_seconds)
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
        return UpstreamTimedOut(timeout_seconds)
    return UpstreamFailed(f"Bedrock could not be reached: {type(exc).__name__}")


def _upstream_error(exc: ClientError, model_id: str, timeout_seconds: float) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
    code = code[:1].upper() + code[1:]  # an exception event inside a stream: throttlingException
    message = exc.response.get("Error", {}).get("Message", "")
    if code in _THROTTLED:
        return UpstreamThrottled()
    if code in _TIMED_OUT:
        return UpstreamTimedOut(timeout_seconds)
    # The deployment's fault, not the caller's: a 502 with nothing of Bedrock's message (the function logs it).
    if code in _REJECTED and _ON_DEMAND_UNSUPPORTED in message.lower():
        return UpstreamFailed(f"Bedrock {code} for model {model_id}: {message} ({_ON_DEMAND_FIX})")
    if code in _OPERATOR_FIXES:
        return UpstreamFailed(f"Bedrock {code} for model {model_id}: {message} ({_OPERATOR_FIXES[code]})")
    if code in _REJECTED:
        return UpstreamRejected(f"the model refused the request: {message}")
    return UpstreamFailed(f"Bedrock {code} for model {model_id}: {message}")
