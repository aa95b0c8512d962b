"""The metering table's by-model token counters: spelled and parsed in core.adapters.metering_items only."""

import pytest

from core.adapters.metering_items import model_tokens_attribute, model_tokens_of, tokens_by_model

MODELS = ["nova-micro", "anthropic.claude-3-haiku-20240307-v1:0", "us.amazon.nova-pro-v1:0", "a@b"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", ["prompt", "completion"])
def test_a_counters_name_parses_back_to_its_kind_and_model(kind: str, model: str) -> None:
    name = model_tokens_attribute(kind, model)  # type: ignore[arg-type]

    assert name == f"{kind}_tokens@{model}"
    assert model_tokens_of(name) == (kind, model)


@pytest.mark.parametrize(
    "name", ["prompt_tokens", "completion_tokens", "prompt_tokens@", "requests_at_2026031014", "hold_ab", "tier"]
)
def test_other_attributes_are_not_by_model_counters(name: str) -> None:
    assert model_tokens_of(name) is None


def test_tokens_by_model_reads_a_ledger_items_counters_models_sorted_both_counters_always_there() -> None:
    item = {
        "requests": 5,
        "prompt_tokens": 19,
        "completion_tokens": 4,
        "prompt_tokens@nova-micro": 7,
        "completion_tokens@nova-micro": 4,
        "prompt_tokens@amazon.titan-embed-text-v2:0": "12",  # DynamoDB numbers arrive as Decimal or str
        "tokens_at_2026031000": 23,
    }

    assert tokens_by_model(item) == {
        "amazon.titan-embed-text-v2:0": {"prompt_tokens": 12, "completion_tokens": 0},
        "nova-micro": {"prompt_tokens": 7, "completion_tokens": 4},
    }
    assert tokens_by_model({}) == {}
