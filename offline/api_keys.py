"""Where a request's API key comes from, and what the emulator knows of keys and their usage plans.

Keys and plans are read straight from moto's API Gateway backend in this process, as API Gateway's data
plane reads its own configuration: no management call per request, so nothing here counts against the
management-API rate limits. The key source follows the API's ApiKeySourceType: HEADER reads `x-api-key`;
AUTHORIZER applies the rule of the template's key authorizer (core.ai.api_key_source, the code that authorizer
runs), which returns the key from `x-api-key` or `Authorization: Bearer` as usageIdentifierKey.
"""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from moto.apigateway.models import APIGatewayBackend, apigateway_backends

from core.ai.api_key_source import key_from_headers
from offline.template import ACCOUNT_ID, TemplateError

API_KEY_HEADER = "x-api-key"


class KeySource(Protocol):
    """Finds the API key value of a request, or None."""

    def key_value(self, headers: Mapping[str, str]) -> str | None: ...


class HeaderKeySource:
    """ApiKeySourceType HEADER: the key is the X-API-Key header (headers are matched lower-cased)."""

    def key_value(self, headers: Mapping[str, str]) -> str | None:
        return headers.get(API_KEY_HEADER) or None


class AuthorizerKeySource:
    """ApiKeySourceType AUTHORIZER, with the template's key authorizer (handlers.api_key_authorizer): the
    usageIdentifierKey it would return. The authorizer function itself is not invoked per request offline;
    its rule is, being the same code. Like the authorizer, it never refuses: a request without a key gets
    API Gateway's own 403 from the key check."""

    def key_value(self, headers: Mapping[str, str]) -> str | None:
        return key_from_headers(headers)


def key_source_for(api_key_source_type: str) -> KeySource:
    """The key source of an API's ApiKeySourceType."""
    if api_key_source_type == "HEADER":
        return HeaderKeySource()
    if api_key_source_type == "AUTHORIZER":
        return AuthorizerKeySource()
    raise TemplateError(f"ApiKeySourceType {api_key_source_type} is not emulated offline (HEADER or AUTHORIZER)")


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: float


@dataclass(frozen=True)
class PlanForKey:
    """The usage plan that meters a key on one API stage, as the gateway needs it."""

    plan_id: str
    throttle: Throttle | None
    method_throttles: dict[str, Throttle]  # "/resource/path/METHOD" -> throttle, from the plan's apiStages


@dataclass(frozen=True)
class KnownKey:
    id: str
    enabled: bool


class KeyRegistry:
    """Reads API keys and usage plans of one account and region from moto's backend."""

    def __init__(self, region: str, account_id: str = ACCOUNT_ID) -> None:
        self._account_id = account_id
        self._region = region
        self._by_value: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def _backend(self) -> APIGatewayBackend:
        # Looked up each time: moto's reset replaces the backend object.
        return apigateway_backends[self._account_id][self._region]

    def find(self, value: str) -> KnownKey | None:
        """The key with this value, if it exists now (created, not deleted)."""
        keys = self._backend.keys
        key_id = self._by_value.get(value)
        key = keys.get(key_id) if key_id else None
        if key is None or key.value != value:
            key = self._reindex(value)
        if key is None:
            return None
        return KnownKey(id=key.id, enabled=bool(key.enabled))

    def plan_for(self, key_id: str, rest_api_id: str, stage: str) -> PlanForKey | None:
        """The plan holding the key on this API stage; AWS allows at most one."""
        backend = self._backend
        for plan_id, members in list(backend.usage_plan_keys.items()):
            if key_id not in members:
                continue
            plan = backend.usage_plans.get(plan_id)
            if plan is None:
                continue
            for api_stage in list(plan.api_stages):
                if api_stage.get("apiId") == rest_api_id and api_stage.get("stage") == stage:
                    return PlanForKey(
                        plan_id=plan_id,
                        throttle=_throttle(plan.throttle),
                        method_throttles=_method_throttles(api_stage.get("throttle") or {}),
                    )
        return None

    def _reindex(self, value: str) -> Any:
        # A new key (or a value we have not seen): rebuild the value index once rather than scan per request.
        with self._lock:
            self._by_value = {key.value: key.id for key in list(self._backend.keys.values())}
            key_id = self._by_value.get(value)
            return self._backend.keys.get(key_id) if key_id else None


def _throttle(settings: Mapping[str, object] | None) -> Throttle | None:
    if not settings or settings.get("rateLimit") is None:
        return None
    rate = float(str(settings["rateLimit"]))
    burst = float(str(settings.get("burstLimit", rate)))
    return Throttle(rate=rate, burst=burst)


def _method_throttles(throttles: Mapping[str, Mapping[str, object]]) -> dict[str, Throttle]:
    parsed = {path: _throttle(settings) for path, settings in throttles.items()}
    return {path: throttle for path, throttle in parsed.items() if throttle is not None}
