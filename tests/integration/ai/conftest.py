"""The AI API's emulated stack (test_ai_api's fixtures), for every test module of the AI capability."""

from tests.integration.ai.test_ai_api import ai_stack, ai_template

__all__ = ["ai_stack", "ai_template"]
