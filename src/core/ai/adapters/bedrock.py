"""Amazon Bedrock adapter: chat completions through the Converse API (the ModelProvider port).

OpenAI's system and developer messages become Converse's `system` blocks; consecutive turns of one role
are merged into one message, since Converse wants user and assistant to alternate. Bedrock's errors
become the domain's upstream errors: throttling 429, validation 400, timeouts 504, the rest 502. A model the
deployment cannot call (no access, an unknown id, a plain id where Bedrock wants an inference profile) is the
operator's to fix: 502 to the partner, and a message for the operator's log saying what to change.
"""

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from core.ai.chat import (
    FinishReason,
    ModelReply,
    ModelRequest,
    StreamEvent,
    estimate_completion_tokens,
    estimate_prompt_tokens,
)
from core.aws import bedrock_runtime_client
from core.errors import UpstreamFailed, UpstreamRejected, UpstreamThrottled, UpstreamTimedOut

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

# Converse's stopReason -> OpenAI's finish_reason.
FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
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


class BedrockConverse:
    """The ModelProvider port on Bedrock's Converse API."""

    def __init__(self, client: "BedrockRuntimeClient | None" = None, read_timeout_seconds: float = 20.0) -> None:
        self._client = client or bedrock_runtime_client(read_timeout_seconds)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return estimate_prompt_tokens(request)

    def estimate_completion_tokens(self, text: str) -> int:
        return estimate_completion_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        raise UpstreamFailed("streaming is not implemented for this provider yet")

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        started = time.perf_counter()
        try:
            answer = self._client.converse(**converse_request(request))
        except ClientError as exc:
            raise _upstream_error(exc, request.provider_model_id, timeout_seconds) from exc
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise UpstreamTimedOut(timeout_seconds) from exc
        except BotoCoreError as exc:
            raise UpstreamFailed(f"Bedrock could not be reached: {type(exc).__name__}") from exc
        return reply_from_converse(answer, (time.perf_counter() - started) * 1000)


def converse_request(request: ModelRequest) -> dict[str, Any]:
    """Converse's request for `request` (botocore's bedrock-runtime model; pinned by Stubber in tests)."""
    messages: list[dict[str, Any]] = []
    for turn in request.turns:
        if messages and messages[-1]["role"] == turn.role:
            messages[-1]["content"].append({"text": turn.text})
        else:
            messages.append({"role": turn.role, "content": [{"text": turn.text}]})
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
    if system:
        converse["system"] = system
    return converse


def reply_from_converse(answer: Any, latency_ms: float) -> ModelReply:
    content = ((answer.get("output") or {}).get("message") or {}).get("content") or []
    usage = answer.get("usage") or {}
    return ModelReply(
        text="".join(block["text"] for block in content if "text" in block),
        finish_reason=FINISH_REASONS.get(str(answer.get("stopReason")), "stop"),
        prompt_tokens=int(usage.get("inputTokens", 0)),
        completion_tokens=int(usage.get("outputTokens", 0)),
        latency_ms=float((answer.get("metrics") or {}).get("latencyMs", latency_ms)),
    )


def _upstream_error(exc: ClientError, model_id: str, timeout_seconds: float) -> Exception:
    code = exc.response.get("Error", {}).get("Code", "")
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
