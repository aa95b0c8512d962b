"""The AI API's service: who is calling (key -> partner -> tier), the models a tier may call, chat
completions metered in tokens, and a partner's own usage.

Nothing here calls API Gateway's management API: API Gateway has already checked the key, its plan's
throttle and its quota before the function runs; the tier comes from the partners table, the tier's limits
from the template (TIERS), and usage from our own ledger plus the quota monitor's latest reading.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from core.adapters.partners_table import PartnerRecords
from core.ai.adapters.metering_table import MeteringTable
from core.ai.chat import (
    ChatCompletionRequest,
    Completion,
    ModelReply,
    ModelRequest,
    model_request,
    parse_chat_request,
)
from core.ai.ledger import LedgerEntry, LedgerReading
from core.ai.metering import TokenBudgetRefusal, TokenMeter, TokenReservation
from core.ai.models import AiCaller
from core.ai.ports import ModelProvider, PartnerLookup, TokenLedger
from core.ai.rate_limits import QUOTA_READING_CACHE_SECONDS, QuotaReadings, Standing, rate_limit_headers, standing
from core.ai.settings import AiApiSettings, ChatSettings, ModelsSettings, UsageSettings
from core.errors import (
    ApiKeyMissing,
    DomainError,
    InvalidRequest,
    KeyNotRegistered,
    ModelNotFound,
    ModelNotInTier,
    PartnerDisabled,
    ProviderMisconfigured,
    TierPolicyMissing,
)
from core.models import Partner, PartnerStatus
from core.observability import logger, request_metrics
from core.periods import period_key
from core.settings import load_settings
from core.tier_policy import CatalogModel, ModelCatalog, TierPolicy

# Time kept back from the function's deadline for releasing a reservation and answering after a timeout.
RESPONSE_MARGIN_SECONDS = 2.0
MIN_UPSTREAM_TIMEOUT_SECONDS = 0.5


class PartnerDirectory:
    """The partner and tier of an API key id, from the partners table.

    Which partner owns a key never changes, so that is reused for `ttl_seconds`; the partner's record (tier,
    status) is read on every request, so a tier change or a disabled partner applies from the next request.
    """

    def __init__(
        self,
        partners: PartnerLookup,
        tiers: dict[str, TierPolicy],
        ttl_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._partners = partners
        self._tiers = tiers
        self._ttl = ttl_seconds
        self._clock = clock
        self._owners: dict[str, tuple[float, str]] = {}

    def caller(self, api_key_id: str | None) -> AiCaller:
        if not api_key_id:
            raise ApiKeyMissing()
        partner = self._partner(api_key_id)
        if partner is None:
            raise KeyNotRegistered()
        if partner.status is not PartnerStatus.ACTIVE:
            # Cancelled by billing, suspended or revoked by an operator, or DORMANT (its key deleted by the
            # dormant-key sweep): the key is disabled or deleted at API Gateway too, but a call already past it (or
            # a cached authorization) stops here.
            raise PartnerDisabled()
        policy = self._tiers.get(partner.tier)
        if policy is None:
            raise TierPolicyMissing(partner.tier)
        # Metered on the partner's current key: during a rotation's grace the old key draws on the new key's
        # ledger item, so the partner's tokens this period are counted once (core.key_rotation).
        return AiCaller(
            api_key_id=partner.api_key_id or api_key_id, partner_id=partner.partner_id, tier=partner.tier, policy=policy
        )

    def _partner(self, api_key_id: str) -> Partner | None:
        now = self._clock()
        owner = self._owners.get(api_key_id)
        if owner is not None and owner[0] > now:
            return self._partners.get(owner[1])
        # A key no partner owns yet is not remembered: its signup may be finishing right now.
        partner = self._partners.get_by_api_key_id(api_key_id)
        if partner is not None:
            self._owners[api_key_id] = (now + self._ttl, partner.partner_id)
        return partner


@dataclass(frozen=True)
class RequestOutcome:
    """What one AI request (a chat completion, or embeddings) reports as metrics (dimensions: tier and model
    only). Embeddings have no completion tokens (None: no CompletionTokens metric)."""

    tier: str
    model: str
    outcome: Literal["completed", "upstream_error", "budget_refused"]
    prompt_tokens: int = 0
    completion_tokens: int | None = 0
    upstream_latency_ms: float | None = None
    requests_metric: Literal["ChatRequests", "EmbeddingRequests"] = "ChatRequests"


def emit_request_metrics(outcome: RequestOutcome) -> None:
    """One EMF record per request. Never a per-key or per-partner dimension: those are in the ledger."""
    metrics = request_metrics()
    metrics.add_dimension(name="tier", value=outcome.tier)
    metrics.add_dimension(name="model", value=outcome.model)
    metrics.add_metric(name=outcome.requests_metric, unit=MetricUnit.Count, value=1)
    if outcome.outcome == "budget_refused":
        metrics.add_metric(name="TokenBudgetRefusals", unit=MetricUnit.Count, value=1)
    if outcome.outcome == "upstream_error":
        metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
    if outcome.outcome == "completed":
        metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=outcome.prompt_tokens)
        if outcome.completion_tokens is not None:
            metrics.add_metric(name="CompletionTokens", unit=MetricUnit.Count, value=outcome.completion_tokens)
    if outcome.upstream_latency_ms is not None:
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=outcome.upstream_latency_ms)
    metrics.flush_metrics()


@dataclass(frozen=True)
class Admission:
    """A chat request that passed every check and holds its reservation (prompt estimate + max_tokens)."""

    caller: AiCaller
    request: ChatCompletionRequest
    model: CatalogModel
    prompt: ModelRequest
    provider: ModelProvider
    prompt_tokens_estimate: int
    reservation: TokenReservation


class AiApi:
    def __init__(
        self,
        settings: AiApiSettings,
        partners: PartnerLookup,
        ledger: TokenLedger,
        provider: ModelProvider | None = None,
        *,
        upstream_timeout_seconds: float = 20.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        record_metrics: Callable[[RequestOutcome], None] = emit_request_metrics,
    ) -> None:
        self._settings = settings
        self._catalog: ModelCatalog = settings.models
        self._ledger = ledger
        self._provider = provider
        self._upstream_timeout = upstream_timeout_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._record_metrics = record_metrics
        self._meter = TokenMeter(ledger, clock)
        self._quota_readings = QuotaReadings(ledger, QUOTA_READING_CACHE_SECONDS, monotonic)
        self.partners = PartnerDirectory(partners, settings.tiers, settings.partner_cache_seconds, monotonic)

    def caller(self, api_key_id: str | None) -> AiCaller:
        return self.partners.caller(api_key_id)

    # What a streamed completion (core.ai.streaming) shares with a buffered one.
    @property
    def meter(self) -> TokenMeter:
        return self._meter

    def report(self, outcome: RequestOutcome) -> None:
        self._record_metrics(outcome)

    def upstream_timeout(self, seconds_left: float) -> float:
        return self._timeout(seconds_left)

    def rate_limit_headers(self, caller: AiCaller, entry: LedgerEntry, reading: LedgerReading) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the caller's standing at `reading`, the ledger as this request's
        own write returned it (count_request, or a reservation's `reading`): no extra ledger read. The quota
        monitor's reading is remembered for a minute per key (core.ai.rate_limits)."""
        found = standing(caller.policy, entry, reading, self._quota_readings.get(entry), self._clock())
        return rate_limit_headers(found)

    def list_models(self, caller: AiCaller) -> tuple[dict[str, Any], dict[str, str]]:
        """OpenAI's `GET /v1/models` body (the models the caller's tier may call) and its rate-limit headers."""
        entry = self._meter.entry(caller)
        reading = self._meter.count_request(entry)
        body = {
            "object": "list",
            "data": [
                # `created` is 0: the catalog has no creation dates.
                {"id": model.name, "object": "model", "created": 0, "owned_by": self._settings.models_owner}
                for model in caller.policy.allowed_models(self._catalog)
            ],
        }
        return body, self.rate_limit_headers(caller, entry, reading)

    def usage(self, caller: AiCaller) -> tuple[dict[str, Any], dict[str, str]]:
        """The caller's standing in the current quota period (this request included, as API Gateway counts it),
        as `GET /v1/usage`'s body and as the rate-limit headers, both from one computation. The quota monitor's
        reading is read fresh here."""
        entry = self._meter.entry(caller)
        reading = self._meter.count_request(entry)
        found = standing(caller.policy, entry, reading, self._ledger.quota_reading(entry), self._clock())
        return usage_body(caller, entry, reading, found), rate_limit_headers(found)

    def admit(self, caller: AiCaller, body: str | None, seconds_left: float) -> Admission:
        """Validate a chat request and reserve its tokens until the deadline (`seconds_left`), or raise; the
        domain errors raised once the caller is known carry the rate-limit headers."""
        entry = self._meter.entry(caller)
        try:
            request = parse_chat_request(body)
            model = self._model_for(caller, request.model)
            prompt = model_request(request, model, caller.policy.default_max_tokens)
            provider = self._require_provider()
            prompt_tokens = provider.estimate_prompt_tokens(prompt)
        except DomainError as exc:
            reading = self._meter.count_request(entry)  # API Gateway counted it: so do we
            exc.headers = self.rate_limit_headers(caller, entry, reading)
            raise
        try:
            reservation = self._meter.reserve(
                entry, caller, prompt_tokens + prompt.max_tokens, seconds_left, model=model.name
            )
        except TokenBudgetRefusal as exc:
            exc.headers = self.rate_limit_headers(caller, entry, exc.reading)
            self._record_metrics(RequestOutcome(caller.tier, model.name, "budget_refused"))
            raise
        return Admission(caller, request, model, prompt, provider, prompt_tokens, reservation)

    def complete(self, caller: AiCaller, body: str | None, seconds_left: float) -> Completion:
        """Serve a chat completion: validate, reserve tokens, call the model, settle (or release on failure)."""
        admitted = self.admit(caller, body, seconds_left)
        model, prompt, provider, reservation = admitted.model, admitted.prompt, admitted.provider, admitted.reservation
        tokens = reservation.tokens
        started = self._monotonic()
        try:
            reply = provider.complete(prompt, self._timeout(seconds_left))
        except BaseException as exc:
            latency = (self._monotonic() - started) * 1000
            self._meter.release(reservation)
            self._record_metrics(RequestOutcome(caller.tier, model.name, "upstream_error", upstream_latency_ms=latency))
            if isinstance(exc, DomainError):
                exc.headers = self.rate_limit_headers(caller, reservation.entry, reservation.reading_after_release())
            raise
        settled = self._settle(reservation, reply, caller)
        latency = reply.latency_ms or (self._monotonic() - started) * 1000
        self._record_metrics(
            RequestOutcome(caller.tier, model.name, "completed", reply.prompt_tokens, reply.completion_tokens, latency)
        )
        logger.info(
            "completed chat",
            tier=caller.tier,
            model=model.name,
            api_key_id=caller.api_key_id,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            reserved_tokens=tokens,
            finish_reason=reply.finish_reason,
        )
        return Completion(
            model=model.name, reply=reply, headers=self.rate_limit_headers(caller, reservation.entry, settled)
        )

    def _model_for(self, caller: AiCaller, name: str, *, embeddings: bool = False) -> CatalogModel:
        model = self._catalog.get(name)
        if model is None:
            raise ModelNotFound(name)
        if model.serves_embeddings != embeddings:
            if model.serves_embeddings:
                raise InvalidRequest(f"{name} is an embedding model: call it on /v1/embeddings", param="model")
            raise InvalidRequest(f"{name} is a chat model: call it on /v1/chat/completions", param="model")
        if not caller.policy.allows(name):
            allowed = [item.name for item in caller.policy.allowed_models(self._catalog)]
            raise ModelNotInTier(name, caller.tier, allowed)
        return model

    def _require_provider(self) -> ModelProvider:
        if self._provider is None:
            raise ProviderMisconfigured("this function has no model provider")
        return self._provider

    def _timeout(self, seconds_left: float) -> float:
        # Answer before the function (and API Gateway's 29 s) gives up, so the caller gets our 504.
        return max(min(self._upstream_timeout, seconds_left - RESPONSE_MARGIN_SECONDS), MIN_UPSTREAM_TIMEOUT_SECONDS)

    def _settle(self, reservation: TokenReservation, reply: ModelReply, caller: AiCaller) -> LedgerReading:
        """Settle the reservation; the ledger as this request leaves it (still held if the settlement failed)."""
        try:
            self._meter.settle(reservation, reply)
        except Exception:
            # The caller has its answer. The hold keeps its tokens until this function's deadline has passed,
            # then the next request that needs them gives them back (core.ai.metering); this usage is not charged.
            logger.exception(
                "could not settle a token reservation",
                api_key_id=caller.api_key_id,
                reserved_tokens=reservation.tokens,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
            )
            return reservation.reading
        return reservation.reading_after_settle(reply)


def usage_body(caller: AiCaller, entry: LedgerEntry, reading: LedgerReading, found: Standing) -> dict[str, Any]:
    """`GET /v1/usage`: requests against the quota API Gateway enforces, tokens against the tier's budget, as
    `standing` (core.ai.rate_limits) found them; the token breakdown from the ledger's reading."""
    policy = caller.policy
    return {
        "object": "usage",
        "tier": caller.tier,
        "period": {
            "quota_period": policy.quota_period,
            "start": period_key(entry.period_start),
            "resets_at": period_key(entry.period_reset),
        },
        "requests": {
            "used": found.requests_used,
            "remaining": found.requests_remaining,
            "limit": found.requests_limit,
            "source": found.requests_source,
            "quota_reading_as_of": found.quota_reading_as_of,
        },
        "tokens": {
            "prompt": reading.prompt_tokens,
            "completion": reading.completion_tokens,
            "used": reading.used_tokens,
            "reserved": reading.reserved_tokens,
            "budget": found.token_budget,
            "remaining": found.tokens_remaining,
        },
        "throttle": {
            "rate_limit": policy.rate_limit,
            "burst_limit": policy.burst_limit,
            # The plan's method throttle, which replaces the plan's own for chat completions (null: none).
            "chat_completions": policy.chat_completions_throttle,
        },
        "as_of": period_key(found.as_of),
        # The period so far for a chart: each hour of a DAY period, each day of a WEEK or MONTH, that counted
        # something (from the ledger item this request updated: no extra read).
        "series": {
            "bucket": "hour" if policy.quota_period == "DAY" else "day",
            "points": [
                {"start": period_key(bucket.start), "requests": bucket.requests, "tokens": bucket.tokens}
                for bucket in reading.buckets
            ],
        },
    }


def model_provider(settings: ChatSettings) -> ModelProvider:
    """The deployment's provider (template parameter ModelProvider). Imported here, so the functions that
    serve no completions never load an HTTP or Bedrock client."""
    if settings.model_provider == "offline":
        from core.ai.offline_model import OfflineModel  # noqa: PLC0415 - see the docstring

        return OfflineModel(chunk_delay_seconds=settings.offline_stream_chunk_delay_ms / 1000)
    if settings.model_provider == "bedrock":
        from core.ai.adapters.bedrock import BedrockConverse  # noqa: PLC0415

        return BedrockConverse(read_timeout_seconds=settings.upstream_timeout_seconds)
    from core.ai.adapters.openai_compatible import OpenAICompatible  # noqa: PLC0415
    from core.ai.adapters.upstream_key import UpstreamApiKey  # noqa: PLC0415

    if settings.upstream_api_key_source == "none":
        return OpenAICompatible(settings.upstream_base_url)
    key = UpstreamApiKey(
        settings.upstream_api_key_source, settings.upstream_api_key_name, settings.secret_cache_seconds
    )
    return OpenAICompatible(settings.upstream_base_url, api_key=key.value)


def _api(settings: AiApiSettings, provider: ModelProvider | None = None, upstream_timeout: float = 20.0) -> AiApi:
    return AiApi(
        settings,
        PartnerRecords(settings.partners_table),
        MeteringTable(settings.metering_table),
        provider,
        upstream_timeout_seconds=upstream_timeout,
    )


@cache
def models_api() -> AiApi:
    return _api(load_settings(ModelsSettings))


@cache
def usage_api() -> AiApi:
    return _api(load_settings(UsageSettings))


@cache
def chat_api() -> AiApi:
    settings = load_settings(ChatSettings)
    return _api(settings, model_provider(settings), settings.upstream_timeout_seconds)
