"""Amazon Bedrock adapter for embeddings through InvokeModel (the EmbeddingsProvider port).

Each model family has its own body (Bedrock's model parameters pages; pinned by Stubber tests):
- Titan Text Embeddings (`amazon.titan-embed-text-*`): one text per call, `{"inputText", "dimensions",
  "normalize"}` (V1: inputText only), answering `{"embedding", "inputTextTokenCount"}`;
- Cohere Embed v3 (`cohere.embed-*-v3`): up to 96 texts per call, `{"texts", "input_type": "search_document"}`,
  answering `{"embeddings": [[...]], ...}`; its tokens come from the `X-Amzn-Bedrock-Input-Token-Count` header.
A request's calls run a few at a time within its deadline. Bedrock's errors map as for chat (core.ai.adapters.
bedrock): throttling 429, validation 400, timeouts 504, the rest 502.
"""

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from core.ai.adapters.bedrock import _upstream_error
from core.ai.embeddings import EmbeddingReply, EmbeddingRequest, estimate_input_tokens, reply_vectors
from core.aws import bedrock_runtime_client
from core.errors import UpstreamFailed, UpstreamTimedOut

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

COHERE_TEXTS_PER_CALL = 96
# Calls of one request in flight at once: below botocore's 10 pooled connections, and a small share of the
# account's InvokeModel requests per minute.
CONCURRENT_CALLS = 8
INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"
CROSS_REGION_PREFIXES = ("us", "eu", "apac", "jp", "au", "ca", "global")

# One InvokeModel call: its body for some texts, and how to read its answer (vectors, tokens or None).
Batch = tuple[list[str], dict[str, Any]]
Reader = Callable[[dict[str, Any], int], tuple[list[list[float]], int | None]]


class BedrockEmbeddings:
    """The EmbeddingsProvider port on Bedrock's InvokeModel."""

    def __init__(
        self,
        client: "BedrockRuntimeClient | None" = None,
        read_timeout_seconds: float = 20.0,
        concurrent_calls: int = CONCURRENT_CALLS,
    ) -> None:
        self._client = client or bedrock_runtime_client(read_timeout_seconds)
        self._concurrent_calls = concurrent_calls

    def estimate_input_tokens(self, texts: Sequence[str]) -> int:
        return estimate_input_tokens(texts)

    def embed(self, request: EmbeddingRequest, timeout_seconds: float) -> EmbeddingReply:
        batches, read = invoke_bodies(request)
        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=min(self._concurrent_calls, len(batches)))
        try:
            model_id = request.provider_model_id
            futures = [pool.submit(self._invoke, model_id, body, timeout_seconds) for _, body in batches]
            done, pending = wait(futures, timeout=timeout_seconds, return_when=FIRST_EXCEPTION)
            _raise_first_failure(futures, done)
            if pending:
                raise UpstreamTimedOut(timeout_seconds)
        finally:
            # Not waiting: after a failure or the deadline, calls not started are dropped, running ones ignored.
            pool.shutdown(wait=False, cancel_futures=True)
        vectors: list[list[float]] = []
        tokens = 0
        for (texts, _), future in zip(batches, futures, strict=True):
            batch_vectors, batch_tokens = _read(read, future.result(), texts)
            vectors += batch_vectors
            tokens += batch_tokens
        return EmbeddingReply(vectors=vectors, prompt_tokens=tokens, latency_ms=(time.perf_counter() - started) * 1000)

    def _invoke(self, model_id: str, body: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        try:
            response = self._client.invoke_model(
                modelId=model_id, body=json.dumps(body), contentType="application/json", accept="application/json"
            )
        except ClientError as exc:
            raise _upstream_error(exc, model_id, timeout_seconds) from exc
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise UpstreamTimedOut(timeout_seconds) from exc
        except BotoCoreError as exc:
            raise UpstreamFailed(f"Bedrock could not be reached: {type(exc).__name__}") from exc
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return {"body": response["body"].read(), "input_tokens": headers.get(INPUT_TOKENS_HEADER)}


def invoke_bodies(request: EmbeddingRequest) -> tuple[list[Batch], Reader]:
    """The InvokeModel bodies for `request`'s texts, and the reader of their answers."""
    family = _family(request.provider_model_id)
    if family.startswith("amazon.titan-embed-text"):
        # V1 takes inputText alone; V2 also normalize and dimensions.
        body: dict[str, Any] = {}
        if family.startswith("amazon.titan-embed-text-v2"):
            body["normalize"] = True
            if request.dimensions is not None:
                body["dimensions"] = request.dimensions
        return [([text], {"inputText": text, **body}) for text in request.texts], _titan_answer
    if family.startswith("cohere.embed-") and family.endswith("-v3"):
        texts = list(request.texts)
        chunks = [texts[start : start + COHERE_TEXTS_PER_CALL] for start in range(0, len(texts), COHERE_TEXTS_PER_CALL)]
        return [(chunk, {"texts": chunk, "input_type": "search_document"}) for chunk in chunks], _cohere_answer
    raise UpstreamFailed(
        f"no Bedrock embeddings body is known for model {request.provider_model_id}: Titan Text Embeddings and "
        "Cohere Embed v3 are supported (check the Models parameter)"
    )


def _family(model_id: str) -> str:
    """The model id without a cross-Region prefix (`us.cohere.embed-v4:0` -> `cohere.embed-v4:0`)."""
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in CROSS_REGION_PREFIXES else model_id


def _titan_answer(answer: dict[str, Any], count: int) -> tuple[list[list[float]], int | None]:
    return reply_vectors([answer["embedding"]], count), int(answer["inputTextTokenCount"])


def _cohere_answer(answer: dict[str, Any], count: int) -> tuple[list[list[float]], int | None]:
    return reply_vectors(answer["embeddings"], count), None


def _read(read: Reader, result: dict[str, Any], texts: list[str]) -> tuple[list[list[float]], int]:
    try:
        vectors, tokens = read(json.loads(result["body"]), len(texts))
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamFailed("Bedrock answered with a body that is not embeddings") from exc
    if tokens is None:
        header = result["input_tokens"]
        tokens = int(header) if header and str(header).isdigit() else estimate_input_tokens(texts)
    return vectors, tokens


def _raise_first_failure(futures: list[Future[dict[str, Any]]], done: set[Future[dict[str, Any]]]) -> None:
    """The first call's error, in the texts' order: a throttle or a refusal is the whole request's answer."""
    for future in futures:
        error = future.exception() if future in done else None
        if error is not None:
            raise error
