"""The operator console in-process against the emulated stack provisioned from template.yaml: AdminFunction's
environment as the template sets it, partners signed up through signup's own service, and a way to call."""

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.admin.service import admin_service, usage_exporter
from core.billing.service import TierChangeService, tier_change_service
from core.observability import metrics
from core.settings import forget_settings
from core.signup.models import SignupRequest
from core.signup.service import signup_service
from handlers import admin
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.lambda_events import LambdaContext, admin_event


@pytest.fixture
def admin_env(
    signup_env: None, stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    variables = template.resources["AdminFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "namespace", os.environ["POWERTOOLS_METRICS_NAMESPACE"])
    forget_settings()
    admin_service.cache_clear()
    usage_exporter.cache_clear()
    yield
    forget_settings()
    admin_service.cache_clear()
    usage_exporter.cache_clear()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(method: str, path: str, body: Any = None, query: dict[str, str] | None = None, **options: Any) -> Answer:
    """AdminFunction's answer to one call, as API Gateway would pass it on."""
    response = admin.handler(admin_event(method, path, body, query, **options), LambdaContext("AdminFunction"))
    headers = {name: values[0] for name, values in (response.get("multiValueHeaders") or {}).items()}
    return Answer(response["statusCode"], json.loads(response["body"]), headers)


def sign_up(name: str = "Acme AI", tier: str | None = None) -> str:
    """A partner signed up through signup's service; its id."""
    email = f"{uuid.uuid4().hex[:10]}@acme.example"
    return signup_service().sign_up(SignupRequest(name=name, email=email, tier=tier)).partner_id


@pytest.fixture
def billing(
    stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TierChangeService]:
    """The billing webhook's service, on the same stack (its environment added to the console's)."""
    variables = template.resources["TierWebhookFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    forget_settings()
    tier_change_service.cache_clear()
    yield tier_change_service()
    forget_settings()
    tier_change_service.cache_clear()
