"""What the AI API allows, from the template's parameters: the deployment's model catalog and each tier's
policy (models it may call, token budget, default max_tokens, and the usage plan's throttle and quota).

Both arrive in the environment (`MODELS`, `TIERS`, see docs/CONTRACTS.md) and are parsed once by the
functions' settings (core.settings). Tier limits come from the same parameters the usage plans are made of,
so the AI functions never call the management API to learn them. Kernel, not `core.ai`: the billing
webhook's tier-change notice lists the same policies.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.periods import QuotaPeriod

ALL_MODELS = "*"


# The most a model writes in one answer, when the catalog does not say: a request's max_tokens may not ask for
# more (it is also what a reservation holds). Known limits by provider model id, without a cross-Region
# inference prefix (`us.`, `eu.`, `apac.`...): Amazon Nova v1 writes at most 5,000 tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
KNOWN_MAX_OUTPUT_TOKENS = {
    "amazon.nova-micro-v1:0": 5000,
    "amazon.nova-lite-v1:0": 5000,
    "amazon.nova-pro-v1:0": 5000,
}

# Embedding models (POST /v1/embeddings) are the catalog's models whose public name contains this; every other
# model serves chat completions (README, "Embeddings").
EMBEDDING_MODEL_MARKER = "embed"


@dataclass(frozen=True)
class EmbeddingLimits:
    """What an embedding model accepts: its output sizes (the first is its default) and the longest text."""

    dimensions: tuple[int, ...]
    max_input_characters: int


# From Bedrock's model parameters pages: Titan Text Embeddings V2 takes up to 50,000 characters and answers
# 1024, 512 or 256 dimensions; Cohere Embed v3 takes up to 2,048 characters per text and answers 1024.
KNOWN_EMBEDDING_LIMITS = {
    "amazon.titan-embed-text-v2:0": EmbeddingLimits((1024, 512, 256), 50_000),
    "cohere.embed-english-v3": EmbeddingLimits((1024,), 2048),
    "cohere.embed-multilingual-v3": EmbeddingLimits((1024,), 2048),
}


@dataclass(frozen=True)
class CatalogModel:
    """A model this deployment serves: the public name clients send, the provider's id for it, and the most
    tokens it writes in one answer."""

    name: str
    provider_model_id: str
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS

    @property
    def serves_embeddings(self) -> bool:
        return EMBEDDING_MODEL_MARKER in self.name.lower()

    @property
    def embedding_limits(self) -> EmbeddingLimits | None:
        """The limits known for this provider model id; None for a model we know nothing of (an upstream's)."""
        return _known(KNOWN_EMBEDDING_LIMITS, self.provider_model_id)


class ModelCatalog:
    """Public model names in the order the template lists them, each with its provider model id."""

    def __init__(self, models: list[CatalogModel]) -> None:
        if not models:
            raise ValueError("the model catalog is empty")
        self._models = {model.name: model for model in models}
        if len(self._models) != len(models):
            raise ValueError("a model name appears twice in the catalog")

    @classmethod
    def parse(cls, text: str) -> "ModelCatalog":
        """`name[=provider-model-id][|max-output-tokens],...`; without `=`, the provider knows the model by its
        public name; without `|`, the limit is the known one for that provider model id, or the default."""
        models = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            model, _, limit = entry.partition("|")
            name, _, provider_id = model.partition("=")
            provider_id = provider_id.strip() or name.strip()
            max_output = _max_output_tokens(limit.strip(), provider_id) if limit else _known_limit(provider_id)
            models.append(CatalogModel(name=name.strip(), provider_model_id=provider_id, max_output_tokens=max_output))
        return cls(models)

    def get(self, name: str) -> CatalogModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self._models.values())


def _max_output_tokens(text: str, provider_id: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"max output tokens of {provider_id} must be a positive whole number, not {text!r}")
    return int(text)


def _known_limit(provider_id: str) -> int:
    return _known(KNOWN_MAX_OUTPUT_TOKENS, provider_id) or DEFAULT_MAX_OUTPUT_TOKENS


def _known[V](table: dict[str, V], provider_id: str) -> V | None:
    """`table`'s entry for a provider model id, with or without a cross-Region prefix (`us.`, `eu.`...)."""
    for model_id, value in table.items():
        if provider_id == model_id or provider_id.endswith(f".{model_id}"):
            return value
    return None


class TierPolicy(BaseModel):
    """One tier's rules for the AI API. `token_budget` 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The public names the tier may call, or ("*",) for every model of the catalog.
    models: Annotated[tuple[str, ...], Field(min_length=1)]
    token_budget: int = Field(ge=0)
    default_max_tokens: int = Field(ge=1)
    rate_limit: float = Field(gt=0)
    burst_limit: int = Field(ge=0)
    quota_limit: int = Field(ge=0)
    quota_period: QuotaPeriod
    # The plan's method throttle on POST /v1/chat/completions (template `<Tier>ChatCompletionsRateLimit` and
    # `BurstLimit`); rate 0: none, the plan's own throttle applies to that route too.
    chat_completions_rate_limit: float = Field(default=0, ge=0)
    chat_completions_burst_limit: int = Field(default=0, ge=0)

    @field_validator("models", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @property
    def chat_completions_throttle(self) -> dict[str, float | int] | None:
        """The method throttle of POST /v1/chat/completions as `/v1/usage` reports it; None: the plan's own."""
        if not self.chat_completions_rate_limit:
            return None
        return {"rate_limit": self.chat_completions_rate_limit, "burst_limit": self.chat_completions_burst_limit}

    @property
    def unlimited_tokens(self) -> bool:
        return self.token_budget == 0

    def allows(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models

    def allowed_models(self, catalog: ModelCatalog) -> list[CatalogModel]:
        """The catalog's models this tier may call, in catalog order."""
        return [model for model in catalog if self.allows(model.name)]
