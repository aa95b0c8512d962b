"""The AI API's embeddings service (POST /v1/embeddings): who is calling and which models it may use, as for
chat completions, and the same token metering: the input's estimate is reserved before the model is called,
settled to the tokens the provider reports, and released if the call fails (core.ai.metering)."""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Literal

from core.adapters.partners_table import PartnerRecords
from core.ai.adapters.metering_table import MeteringTable
from core.ai.chat import ModelReply
from core.ai.embeddings import (
    MAX_RESPONSE_BYTES,
    EmbeddingRequest,
    Embeddings,
    EmbeddingsRequest,
    certainly_too_large,
    embeddings_text,
    parse_embeddings_request,
    response_too_large,
)
from core.ai.metering import TokenBudgetRefusal
from core.ai.models import AiCaller
from core.ai.ports import EmbeddingsProvider, PartnerLookup, TokenLedger
from core.ai.service import AiApi, RequestOutcome, emit_request_metrics
from core.ai.settings import AiApiSettings, EmbeddingsSettings
from core.errors import DomainError, InvalidRequest, ProviderMisconfigured, TokenBudgetExceeded
from core.observability import logger
from core.periods import period_key
from core.settings import load_settings
from core.tier_policy import CatalogModel


class EmbeddingsBudgetExceeded(TokenBudgetExceeded):
    """TokenBudgetExceeded (the same 429), with advice that fits embeddings: they have no max_tokens."""

    def __init__(self, needed: int, remaining: int, resets_at: str) -> None:
        super().__init__(needed, remaining, resets_at)
        self.message = (
            f"token budget exhausted for this period: these inputs need about {needed} tokens and {remaining} "
            f"remain; send fewer or shorter inputs, or wait until {resets_at}"
        )
        self.args = (self.message,)


class EmbeddingsApi(AiApi):
    """AiApi's callers, catalog and meter, serving embeddings instead of chat completions."""

    def __init__(
        self,
        settings: AiApiSettings,
        partners: PartnerLookup,
        ledger: TokenLedger,
        embedder: EmbeddingsProvider | None = None,
        *,
        upstream_timeout_seconds: float = 20.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        record_metrics: Callable[[RequestOutcome], None] = emit_request_metrics,
    ) -> None:
        super().__init__(
            settings,
            partners,
            ledger,
            upstream_timeout_seconds=upstream_timeout_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        self._embedder = embedder
        self._record_outcome = record_metrics

    def embed(self, caller: AiCaller, body: str | None, seconds_left: float) -> Embeddings:
        """Serve embeddings: validate, reserve the inputs' tokens, call the model, settle (or release on failure)."""
        entry = self._meter.entry(caller)
        try:
            request = parse_embeddings_request(body)
            model = self._model_for(caller, request.model, embeddings=True)
            wanted = embedding_request(request, model)
            embedder = self._require_embedder()
            tokens = embedder.estimate_input_tokens(wanted.texts)
        except DomainError as exc:
            reading = self._meter.count_request(entry)  # API Gateway counted it: so do we
            exc.headers = self.rate_limit_headers(caller, entry, reading)
            raise
        try:
            reservation = self._meter.reserve(entry, caller, tokens, seconds_left, model=model.name)
        except TokenBudgetRefusal as exc:
            self._record_outcome(_outcome(caller.tier, model.name, "budget_refused"))
            refusal = EmbeddingsBudgetExceeded(exc.needed, exc.remaining, period_key(entry.period_reset))
            refusal.headers = self.rate_limit_headers(caller, entry, exc.reading)
            raise refusal from exc
        started = self._monotonic()
        try:
            reply = embedder.embed(wanted, self._timeout(seconds_left))
            text = embeddings_text(model.name, reply, request.encoding_format)
            if len(text) > MAX_RESPONSE_BYTES:
                raise response_too_large(wanted.dimensions, request.encoding_format)
        except BaseException as exc:
            latency = (self._monotonic() - started) * 1000
            self._meter.release(reservation)
            if not isinstance(exc, InvalidRequest):
                self._record_outcome(_outcome(caller.tier, model.name, "upstream_error", latency=latency))
            if isinstance(exc, DomainError):
                exc.headers = self.rate_limit_headers(caller, entry, reservation.reading_after_release())
            raise
        # The meter settles replies; an embedding's tokens are all prompt tokens.
        settled = self._settle(reservation, ModelReply("", "stop", reply.prompt_tokens, 0), caller)
        latency = reply.latency_ms or (self._monotonic() - started) * 1000
        self._record_outcome(_outcome(caller.tier, model.name, "completed", reply.prompt_tokens, latency))
        logger.info(
            "served embeddings",
            tier=caller.tier,
            model=model.name,
            api_key_id=caller.api_key_id,
            inputs=len(wanted.texts),
            prompt_tokens=reply.prompt_tokens,
            reserved_tokens=tokens,
        )
        return Embeddings(
            model=model.name,
            prompt_tokens=reply.prompt_tokens,
            text=text,
            headers=self.rate_limit_headers(caller, entry, settled),
        )

    def _require_embedder(self) -> EmbeddingsProvider:
        if self._embedder is None:
            raise ProviderMisconfigured("this function has no embeddings provider")
        return self._embedder


def embedding_request(request: EmbeddingsRequest, model: CatalogModel) -> EmbeddingRequest:
    """The provider-neutral request, checked against what the model accepts when we know it (its output sizes,
    its longest text) and against the response limit, before anything is reserved or called."""
    dimensions = request.dimensions
    limits = model.embedding_limits
    if limits is not None:
        if dimensions is None:
            dimensions = limits.dimensions[0]
        elif dimensions not in limits.dimensions:
            sizes = ", ".join(str(size) for size in limits.dimensions)
            raise InvalidRequest(f"dimensions: {model.name} answers {sizes} dimensions", param="dimensions")
        for index, text in enumerate(request.input):
            if len(text) > limits.max_input_characters:
                raise InvalidRequest(
                    f"input[{index}]: {model.name} takes at most {limits.max_input_characters} characters per input",
                    param="input",
                )
    if dimensions is not None and certainly_too_large(len(request.input), dimensions, request.encoding_format):
        raise response_too_large(dimensions, request.encoding_format)
    return EmbeddingRequest(
        model=model.name, provider_model_id=model.provider_model_id, texts=request.input, dimensions=dimensions
    )


def embeddings_provider(settings: EmbeddingsSettings) -> EmbeddingsProvider:
    """The deployment's embeddings provider (template parameter ModelProvider, as for chat). Imported here, so
    the offline provider never loads an HTTP or Bedrock client."""
    if settings.model_provider == "offline":
        from core.ai.offline_embeddings import OfflineEmbeddings  # noqa: PLC0415 - see the docstring

        return OfflineEmbeddings()
    if settings.model_provider == "bedrock":
        from core.ai.adapters.bedrock_embeddings import BedrockEmbeddings  # noqa: PLC0415

        return BedrockEmbeddings(read_timeout_seconds=settings.upstream_timeout_seconds)
    from core.ai.adapters.openai_embeddings import OpenAICompatibleEmbeddings  # noqa: PLC0415
    from core.ai.adapters.upstream_key import UpstreamApiKey  # noqa: PLC0415

    if settings.upstream_api_key_source == "none":
        return OpenAICompatibleEmbeddings(settings.upstream_base_url)
    key = UpstreamApiKey(
        settings.upstream_api_key_source, settings.upstream_api_key_name, settings.secret_cache_seconds
    )
    return OpenAICompatibleEmbeddings(settings.upstream_base_url, api_key=key.value)


@cache
def embeddings_api() -> EmbeddingsApi:
    settings = load_settings(EmbeddingsSettings)
    return EmbeddingsApi(
        settings,
        PartnerRecords(settings.partners_table),
        MeteringTable(settings.metering_table),
        embeddings_provider(settings),
        upstream_timeout_seconds=settings.upstream_timeout_seconds,
    )


def _outcome(
    tier: str,
    model: str,
    outcome: Literal["completed", "upstream_error", "budget_refused"],
    prompt_tokens: int = 0,
    latency: float | None = None,
) -> RequestOutcome:
    return RequestOutcome(tier, model, outcome, prompt_tokens, None, latency, requests_metric="EmbeddingRequests")
