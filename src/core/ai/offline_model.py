"""The offline provider: a development stand-in for a model, for `make local` and tests. It is not a model.

It answers deterministically and counts tokens by a rule anyone can check by hand (README, "The offline
provider"):
- a token is a whitespace-separated word;
- prompt tokens are the words of every message, system and developer messages included, of the tool calls
  in the history (name and arguments), of each tool definition (its name, its description and its
  parameters as `json.dumps` writes them) and of a response_format's schema (same), plus 85 per image (its
  content is not looked at);
- the reply is the last user or tool message's words, joined by single spaces, cut before the first stop
  sequence (finish_reason "stop");
- with response_format json_object, the reply is `{"reply": "<those words>"}` instead; with json_schema, the
  object the schema describes, built like a tool call's arguments (below);
- a reply longer than max_tokens words is cut after max_tokens words (finish_reason "length"), JSON or not;
- when tool_choice forces a function (it names one, or is "required" with exactly one tool) and the last
  message is not a tool message, the reply is a call to that function (finish_reason "tool_calls") whose
  arguments hold the schema's `required` properties, each valued from its schema: `const`, else the first
  of `enum`, else by type: "string" for a string (longer if `minLength` says so), its `minimum` (or just
  above `exclusiveMinimum`, else 0) for a number or integer, false for a boolean, null,
  an object of its own required properties, an array of `minItems` items; `$ref`s to `#/$defs/...` are
  followed and `anyOf` / `oneOf` take the first choice; past 16 levels or 1000 values (a recursive
  schema), null. A tool message after it is answered with text, as above, so a call -> tool -> answer round
  trip ends;
- completion tokens are the reply's words (for a call: of its name and of its arguments' JSON).
Its prompt estimate is the exact count, so budgets are never overshot with it.

Streamed, the same reply comes one word per TextDelta (the first bare, each next one with its leading space,
so the deltas concatenate to the non-streamed text), `chunk_delay_seconds` apart (template parameter
OfflineStreamChunkDelayMs), then a StreamEnd with the same usage. A tool call streams as one ToolCallDelta
with its id and name, then one per word of its arguments.
"""

import hashlib
import json
import math
import time
from collections.abc import Generator
from typing import Any

from core.ai.chat import (
    FinishReason,
    ModelReply,
    ModelRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)

# The tokens an image counts for (OpenAI's price of a low-detail image), whatever its size.
IMAGE_TOKENS = 85
# Deeper schemas (a recursive $ref) get null there rather than an endless object, and so does everything past
# the first 1000 values (also the most array items and string characters it writes).
MAX_SCHEMA_DEPTH = 16
MAX_EXAMPLE_VALUES = 1000


def count_tokens(text: str) -> int:
    return len(text.split())


class OfflineModel:
    """The ModelProvider port, with no network and no AWS."""

    def __init__(self, chunk_delay_seconds: float = 0.0) -> None:
        self._chunk_delay = chunk_delay_seconds

    def estimate_completion_tokens(self, text: str) -> int:
        return count_tokens(text)

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Generator[StreamEvent]:
        reply = self.complete(request, timeout_seconds)
        pieces: list[StreamEvent] = [
            TextDelta(word if index == 0 else f" {word}") for index, word in enumerate(reply.text.split())
        ]
        for number, call in enumerate(reply.tool_calls):
            pieces.append(ToolCallDelta(number, id=call.id, name=call.name))
            words = call.arguments.split(" ")
            pieces += [ToolCallDelta(number, word if index == 0 else f" {word}") for index, word in enumerate(words)]
        for index, piece in enumerate(pieces):
            if index and self._chunk_delay:
                time.sleep(self._chunk_delay)
            yield piece
        yield StreamEnd(reply.finish_reason, reply.prompt_tokens, reply.completion_tokens)

    def estimate_prompt_tokens(self, request: ModelRequest) -> int:
        return sum(count_tokens(text) for text in request.texts()) + IMAGE_TOKENS * request.image_count()

    def complete(self, request: ModelRequest, timeout_seconds: float) -> ModelReply:
        prompt_tokens = self.estimate_prompt_tokens(request)
        tool = request.forced_tool
        if tool is not None and not (request.turns and request.turns[-1].role == "tool"):
            return self._call(request, tool, prompt_tokens)
        last = next((turn.text for turn in reversed(request.turns) if turn.role in ("user", "tool")), "")
        text = " ".join(last.split())
        cuts = [text.find(stop) for stop in request.stop if stop and stop in text]
        if cuts:
            text = text[: min(cuts)].rstrip()
        if request.response_format is not None:
            schema = request.response_format.schema
            text = json.dumps({"reply": text} if schema is None else example_value(schema))
        words = text.split()
        finish_reason: FinishReason = "stop"
        if len(words) > request.max_tokens:
            words = words[: request.max_tokens]
            finish_reason = "length"
        return ModelReply(" ".join(words), finish_reason, prompt_tokens, len(words))

    def _call(self, request: ModelRequest, tool: ToolSpec, prompt_tokens: int) -> ModelReply:
        schema = tool.parameters or {"type": "object"}
        arguments = json.dumps(example_value(schema))
        # A model cut at max_tokens leaves unfinished arguments behind; so does this one.
        words = f"{tool.name} {arguments}".split()
        finish_reason: FinishReason = "tool_calls"
        if len(words) > request.max_tokens:
            words, finish_reason = words[: request.max_tokens], "length"
            arguments = " ".join(words[1:])
        digest = hashlib.sha256("\n".join(request.texts()).encode()).hexdigest()[:24]
        call = ToolCall(f"call_{digest}", tool.name, arguments)
        return ModelReply("", finish_reason, prompt_tokens, len(words), tool_calls=(call,))


def example_value(schema: Any) -> Any:
    """A deterministic value valid for the JSON schema `schema` (see the module docstring for the rule)."""
    return _Example(schema).value(schema, 0)


class _Example:
    """Builds an example value for one root schema, within a budget of values: a hostile schema (a recursive
    `$ref` with many required properties, `minItems: 1e9`) gets nulls past it, not an endless answer."""

    def __init__(self, root: Any) -> None:
        self._root = root
        self._budget = MAX_EXAMPLE_VALUES

    def value(self, schema: Any, depth: int) -> Any:
        self._budget -= 1
        if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH or self._budget < 0:
            return None
        if "$ref" in schema:
            return self.value(self._resolve(str(schema["$ref"])), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for choices in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(choices), list) and schema[choices]:
                return self.value(schema[choices][0], depth + 1)
        kind = schema.get("type", "object" if "properties" in schema else "string")
        if isinstance(kind, list):
            kind = next((item for item in kind if item != "null"), "null")
        return self._typed(str(kind), schema, depth)

    def _typed(self, kind: str, schema: dict[str, Any], depth: int) -> Any:
        if kind == "object":
            properties = schema.get("properties")
            properties = properties if isinstance(properties, dict) else {}
            required = schema.get("required")
            names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
            return {name: self.value(properties.get(name, {}), depth + 1) for name in names}
        if kind == "array":
            count = min(_number(schema.get("minItems"), 0), MAX_EXAMPLE_VALUES)
            return [self.value(schema.get("items", {}), depth + 1) for _ in range(math.ceil(count))]
        if kind in ("integer", "number"):
            if "minimum" in schema:
                minimum = _number(schema["minimum"], 0)
            else:
                minimum = _number(schema.get("exclusiveMinimum"), -1) + 1
            return minimum if kind == "number" else math.ceil(minimum)
        if kind == "string":
            return "string".ljust(min(math.ceil(_number(schema.get("minLength"), 0)), MAX_EXAMPLE_VALUES), "s")
        return {"boolean": False}.get(kind)

    def _resolve(self, ref: str) -> Any:
        """A local `$ref` (`#/$defs/Name`, `#/definitions/Name`) in the root schema; anything else is None."""
        if not ref.startswith("#"):
            return None
        node: Any = self._root
        for part in ref.removeprefix("#").strip("/").split("/"):
            node = node.get(part) if isinstance(node, dict) and part else node
        return node


def _number(value: Any, default: float) -> float:
    """A JSON number as written (an integer of any size), or the default for anything else and 1e999."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return value if isinstance(value, int) or math.isfinite(value) else default
