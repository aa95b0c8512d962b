"""The local API Gateway: route, check the API key, throttle, meter the quota, validate, then call the function.

Each step answers the way API Gateway does when it refuses (see offline.gateway_responses), in API
Gateway's order: a route must exist, a key-required route needs an enabled key in a plan for this stage,
the plan's throttle (or its method throttle) and the stage's method throttle must have a token, and the
quota must have room. Only a request that passes all of them is counted as usage.
"""

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from core.pacing import TokenBucket
from offline.api_keys import KeyRegistry, KeySource, PlanForKey, Throttle
from offline.apigateway_fidelity import UsageLedger, UsagePlanKeyNotFound
from offline.events import Caller, IncomingRequest, MalformedProxyResponse, proxy_event, read_proxy_response
from offline.functions import FunctionRuntime
from offline.gateway_responses import REFUSALS, GatewayResponses, Refusal, ResponseType
from offline.routes import Route, RouteTable
from offline.template import TemplateError

# API Gateway's integration timeout for REST APIs.
INTEGRATION_TIMEOUT_SECONDS = 29.0
# A Lambda integration whose function is throttled: API Gateway answers 500 (not the function's 502), and
# only DEFAULT_5XX customizes it (AWS re:Post knowledge center, "api-gateway-internal-server-error").
LAMBDA_THROTTLED = Refusal(ResponseType.LAMBDA_FAILURE, HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error")


@dataclass(frozen=True)
class ApiStage:
    """One deployed stage of one REST API, as the gateway serves it."""

    logical_id: str
    rest_api_id: str
    stage: str
    routes: RouteTable
    responses: GatewayResponses
    key_source: KeySource
    method_throttles: dict[tuple[str, str], Throttle] = field(default_factory=dict)  # stage MethodSettings
    binary_media_types: tuple[str, ...] = ()
    validators: dict[tuple[str, str], Draft4Validator] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayResult:
    """The answer, plus what an access log line needs."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request_id: str
    route: Route | None = None
    error_type: str | None = None
    api_key_id: str | None = None
    detail: str | None = None  # why the integration failed, for the console


class ThrottleBuckets:
    """Token buckets by name, rebuilt when their limits change (UpdateUsagePlan takes effect at once)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._lock = threading.Lock()

    def admit(self, name: tuple[str, ...], throttle: Throttle) -> bool:
        bucket = self._buckets.get(name)
        if bucket is None or bucket.rate != throttle.rate or bucket.burst != throttle.burst:
            with self._lock:
                bucket = self._buckets.get(name)
                if bucket is None or bucket.rate != throttle.rate or bucket.burst != throttle.burst:
                    bucket = TokenBucket(throttle.rate, throttle.burst, self._clock)
                    self._buckets[name] = bucket
        return bucket.try_take()


class LocalGateway:
    """Serves the stages of the template's REST APIs by calling their functions in-process."""

    def __init__(
        self,
        stages: list[ApiStage],
        runtime: FunctionRuntime,
        keys: KeyRegistry,
        ledger: UsageLedger,
        *,
        buckets: ThrottleBuckets | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.stages = {stage.stage: stage for stage in stages}
        if len(self.stages) != len(stages):
            raise TemplateError("two REST APIs use the same stage name; offline serves one API per stage name")
        self._runtime = runtime
        self._keys = keys
        self._ledger = ledger
        self._buckets = buckets or ThrottleBuckets()
        self._now = now
        self._default_responses = GatewayResponses()

    def handle(self, stage_name: str, request: IncomingRequest) -> GatewayResult:
        request_id = str(uuid.uuid4())
        stage = self.stages.get(stage_name)
        if stage is None:
            return self._refuse(self._default_responses, ResponseType.MISSING_AUTHENTICATION_TOKEN, request, request_id)
        found = stage.routes.match(request.method, request.path)
        if found is None:
            return self._refuse(stage.responses, ResponseType.MISSING_AUTHENTICATION_TOKEN, request, request_id)
        route, path_parameters = found
        caller = Caller(request_id=request_id)
        if route.api_key_required:
            admitted = self._meter(stage, route, request, request_id)
            if isinstance(admitted, GatewayResult):
                return admitted
            caller = admitted
        elif not self._stage_admits(stage, route):
            return self._refuse(stage.responses, ResponseType.THROTTLED, request, request_id, route=route)
        invalid = self._invalid_body(stage, route, request)
        if invalid is not None:
            return self._refuse(
                stage.responses, invalid, request, request_id, route=route, api_key_id=caller.api_key_id
            )
        event = proxy_event(
            request,
            caller=caller,
            resource_path=route.resource_path,
            path_parameters=path_parameters,
            rest_api_id=stage.rest_api_id,
            stage=stage.stage,
            binary_media_types=stage.binary_media_types,
        )
        return self._integrate(stage, route, request, event, caller)

    def _meter(
        self, stage: ApiStage, route: Route, request: IncomingRequest, request_id: str
    ) -> Caller | GatewayResult:
        """API key, plan, throttles and quota, in API Gateway's order; the caller if admitted."""
        headers = {name.lower(): value for name, value in request.headers}
        value = stage.key_source.key_value(headers)
        key = self._keys.find(value) if value else None
        plan = self._keys.plan_for(key.id, stage.rest_api_id, stage.stage) if key and key.enabled else None
        if key is None or plan is None:
            return self._refuse(stage.responses, ResponseType.INVALID_API_KEY, request, request_id, route=route)
        if not self._key_admits(plan, key.id, route) or not self._stage_admits(stage, route):
            return self._refuse(
                stage.responses, ResponseType.THROTTLED, request, request_id, route=route, api_key_id=key.id
            )
        try:
            quota = self._ledger.try_consume(plan.plan_id, key.id, self._now())
        except UsagePlanKeyNotFound:
            # The key left its plan between the lookup and now.
            return self._refuse(stage.responses, ResponseType.INVALID_API_KEY, request, request_id, route=route)
        if not quota.allowed:
            return self._refuse(
                stage.responses, ResponseType.QUOTA_EXCEEDED, request, request_id, route=route, api_key_id=key.id
            )
        return Caller(request_id=request_id, api_key=value, api_key_id=key.id)

    def _key_admits(self, plan: PlanForKey, key_id: str, route: Route) -> bool:
        # A method throttle in the plan replaces the plan's own throttle for that method.
        method_key = f"{route.resource_path}/{route.method}"
        method_throttle = plan.method_throttles.get(method_key)
        if method_throttle is not None:
            return self._buckets.admit(("key-method", plan.plan_id, key_id, method_key), method_throttle)
        if plan.throttle is None:
            return True
        return self._buckets.admit(("key", plan.plan_id, key_id), plan.throttle)

    def _stage_admits(self, stage: ApiStage, route: Route) -> bool:
        throttle = stage.method_throttles.get((route.resource_path, route.method)) or stage.method_throttles.get(
            ("*", "*")
        )
        if throttle is None:
            return True
        # Stage-level method throttling counts every caller of the method together, key or not.
        return self._buckets.admit(
            ("stage", stage.rest_api_id, stage.stage, route.resource_path, route.method), throttle
        )

    def _invalid_body(self, stage: ApiStage, route: Route, request: IncomingRequest) -> Refusal | None:
        validator = stage.validators.get((route.resource_path, route.method))
        if validator is None:
            return None
        content_type = next((value for name, value in request.headers if name.lower() == "content-type"), "")
        # The model is declared for application/json, which is also what API Gateway assumes without a type.
        if content_type and content_type.split(";")[0].strip().lower() != "application/json":
            return None
        try:
            document = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):  # deeper than a parser goes is not valid JSON
            return _body_refusal("[Invalid JSON in request body]")
        errors = sorted(validator.iter_errors(document), key=lambda error: [str(part) for part in error.path])
        if errors:
            return _body_refusal("[" + ", ".join(error.message for error in errors) + "]")
        return None

    def _integrate(
        self, stage: ApiStage, route: Route, request: IncomingRequest, event: dict[str, Any], caller: Caller
    ) -> GatewayResult:
        result = self._runtime.invoke(route.function_id, event, caller.request_id)
        if result.throttled:
            # Lambda's 429 TooManyRequestsException reaches a proxy integration's caller as a 500.
            refused = self._refuse(
                stage.responses, LAMBDA_THROTTLED, request, caller.request_id, route=route, api_key_id=caller.api_key_id
            )
            return dataclasses.replace(
                refused, detail=f"Lambda throttled the invocation: {_lambda_failure(result.error)}"
            )
        if result.duration_ms > INTEGRATION_TIMEOUT_SECONDS * 1000:
            kind = ResponseType.INTEGRATION_TIMEOUT
            return self._refuse(
                stage.responses, kind, request, caller.request_id, route=route, api_key_id=caller.api_key_id
            )
        failure = _lambda_failure(result.error) if not result.ok else None
        if failure is None:
            try:
                response = read_proxy_response(result.payload)
            except MalformedProxyResponse as exc:
                failure = f"Malformed Lambda proxy response: {exc}"
        if failure is not None:
            kind = ResponseType.LAMBDA_FAILURE
            refused = self._refuse(
                stage.responses, kind, request, caller.request_id, route=route, api_key_id=caller.api_key_id
            )
            # What CloudWatch Logs would hold for the developer; never sent to the client.
            return dataclasses.replace(refused, detail=failure)
        headers = [*response.headers, ("x-amzn-RequestId", caller.request_id)]
        return GatewayResult(response.status, headers, response.body, caller.request_id, route, None, caller.api_key_id)

    def _refuse(
        self,
        responses: GatewayResponses,
        refusal: ResponseType | Refusal,
        request: IncomingRequest,
        request_id: str,
        *,
        route: Route | None = None,
        api_key_id: str | None = None,
    ) -> GatewayResult:
        reason = refusal if isinstance(refusal, Refusal) else REFUSALS[refusal]
        lowered = {name.lower(): value for name, value in request.headers}
        answer = responses.answer(reason, request_id, lambda name: lowered.get(name.lower()))
        headers = [*answer.headers.items(), ("x-amzn-RequestId", request_id)]
        return GatewayResult(answer.status, headers, answer.body, request_id, route, reason.type.value, api_key_id)


def _lambda_failure(error: dict[str, Any] | None) -> str:
    error = error or {}
    trace = "\n".join(error.get("stackTrace") or [])
    return f"{error.get('errorType')}: {error.get('errorMessage')}\n{trace}".rstrip()


def _body_refusal(details: str) -> Refusal:
    default = REFUSALS[ResponseType.BAD_REQUEST_BODY]
    return Refusal(default.type, HTTPStatus(default.status), default.message, details)


def stage_method_throttles(method_settings: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], Throttle]:
    """Stage MethodSettings with throttling, by (resource path, method); ("*", "*") for every method."""
    throttles = {}
    for setting in method_settings:
        rate, burst = setting.get("ThrottlingRateLimit"), setting.get("ThrottlingBurstLimit")
        if rate is None and burst is None:
            continue
        # MethodSettings escape the resource path's slashes as ~1 ("/~1signup" is /signup).
        path = str(setting.get("ResourcePath", "/*")).removeprefix("/").replace("~1", "/") or "/"
        method = str(setting.get("HttpMethod", "*")).upper()
        rate_value = float(rate) if rate is not None else float(burst or 0)
        throttles[(path, method)] = Throttle(rate=rate_value, burst=float(burst if burst is not None else rate_value))
    return throttles


def body_validators(routes: list[Route]) -> dict[tuple[str, str], Draft4Validator]:
    return {
        (route.resource_path, route.method): Draft4Validator(route.request_schema)
        for route in routes
        if route.request_schema is not None
    }
