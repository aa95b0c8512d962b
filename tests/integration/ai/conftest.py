"""The AI API's emulated stack (test_ai_api's fixtures) for every test module of the AI capability, and a
chat function whose provider a test scripts."""

from collections.abc import Iterator

import pytest

from core.ai import service as ai_api
from offline.provision import ProvisionedStack
from tests.fakes import ScriptedModel
from tests.integration.ai.test_ai_api import _clear_caches, ai_stack, ai_template

__all__ = ["ai_stack", "ai_template", "provider"]


@pytest.fixture
def provider(ai_stack: ProvisionedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ScriptedModel]]:
    """The chat function's provider is the ScriptedModel a test puts in the list."""
    scripted: list[ScriptedModel] = []
    monkeypatch.setattr(ai_api, "model_provider", lambda settings: scripted[0])
    _clear_caches()
    yield scripted
    _clear_caches()
