"""The local API Gateway: route, check the API key, throttle, meter the quota, validate, then call the function.

Each step answers the way API Gateway does when it refuses (see offline.gateway_responses), in API
Gateway's order: a route must exist, a key-required route needs an enabled key in a plan for this stage,
the plan's throttle (or its method throttle) and the stage's method throttle must have a token, and the
quota must have room. Only a request that passes all of them is counted as usage.

A route whose integration streams (ResponseTransferMode RESPONSE_STREAM) passes the function's streamed
answer on as it comes, to a ResponseSink (offline.server writes it to the client with chunked transfer).
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
from typing import Any, Protocol

from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from core.pacing import TokenBucket
from offline.api_keys import KeyRegistry, KeySource, PlanForKey, Throttle
from offline.apigateway_fidelity import UsageLedger, UsagePlanKeyNotFound
from offline.events import Caller, IncomingRequest, MalformedProxyResponse, proxy_event, read_proxy_response
from offline.functions import FunctionRuntime, InvocationResult, StopStream
from offline.gateway_responses import REFUSALS, GatewayResponses, Refusal, ResponseType
from offline.iam_auth import MISSING_TOKEN, IamCaller, SigV4Verifier
from offline.routes import Route, RouteTable
from offline.template import TemplateError

# API Gateway's integration timeout for REST APIs; a streaming integration's may be up to 15 minutes
# (developer guide, "Set up an HTTP proxy integration with payload response streaming").
INTEGRATION_TIMEOUT_SECONDS = 29.0
STREAMING_INTEGRATION_TIMEOUT_SECONDS = 900.0
# A streamed Lambda answer: its metadata JSON, 8 NUL bytes, then the body; the metadata must come within
# the first 16 KB (developer guide, "Lambda proxy integration format for response streaming").
STREAM_DELIMITER = b"\0" * 8
MAX_PRELUDE_BYTES = 16 * 1024
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
    streamed: bool = False  # already sent to the ResponseSink as it came; `body` is empty


class ResponseSink(Protocol):
    """Where a streamed answer goes as it is produced."""

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Send the status and headers (raises OSError when the client is gone)."""

    def write(self, chunk: bytes) -> None:
        """Send a piece of the body now (raises OSError when the client is gone)."""

    def end(self) -> None:
        """The body is complete."""

    def cut(self) -> None:
        """The stream stops short (the function failed or timed out after the first byte), as on AWS."""


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
        iam: SigV4Verifier | None = None,
    ) -> None:
        self.stages = {stage.stage: stage for stage in stages}
        if len(self.stages) != len(stages):
            raise TemplateError("two REST APIs use the same stage name; offline serves one API per stage name")
        self._runtime = runtime
        self._keys = keys
        self._ledger = ledger
        self._buckets = buckets or ThrottleBuckets()
        self._now = now
        # AWS_IAM routes: without a verifier, every call to one is unsigned as far as this gateway knows.
        self._iam = iam
        self._default_responses = GatewayResponses()

    def handle(self, stage_name: str, request: IncomingRequest, sink: ResponseSink | None = None) -> GatewayResult:
        """Answer `request`; on a streaming route the answer goes to `sink` as it comes (without one, it is
        gathered into the result)."""
        request_id = str(uuid.uuid4())
        stage = self.stages.get(stage_name)
        if stage is None:
            return self._refuse(self._default_responses, ResponseType.MISSING_AUTHENTICATION_TOKEN, request, request_id)
        found = stage.routes.match(request.method, request.path)
        if found is None:
            return self._refuse(stage.responses, ResponseType.MISSING_AUTHENTICATION_TOKEN, request, request_id)
        route, path_parameters = found
        caller = self._admit(stage, route, request, request_id)
        if isinstance(caller, GatewayResult):
            return caller
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
        return self._integrate(stage, route, request, event, caller, sink=sink)

    def _admit(
        self, stage: ApiStage, route: Route, request: IncomingRequest, request_id: str
    ) -> Caller | GatewayResult:
        """IAM authorization, then the key's or the stage's throttles and quota; the caller if admitted."""
        identity: IamCaller | None = None
        if route.iam_auth:
            # API Gateway authorizes before it checks a key, throttles or counts anything.
            verified = self._iam.verify(request, stage.stage) if self._iam else MISSING_TOKEN
            if isinstance(verified, Refusal):
                return self._refuse(stage.responses, verified, request, request_id, route=route)
            identity = verified
        caller = Caller(request_id=request_id)
        if route.api_key_required:
            admitted = self._meter(stage, route, request, request_id)
            if isinstance(admitted, GatewayResult):
                return admitted
            caller = admitted
        elif not self._stage_admits(stage, route):
            return self._refuse(stage.responses, ResponseType.THROTTLED, request, request_id, route=route)
        if identity is None:
            return caller
        return dataclasses.replace(
            caller,
            access_key=identity.access_key,
            user_arn=identity.user_arn,
            user_id=identity.user_id,
            account_id=identity.account_id,
        )

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
        self,
        stage: ApiStage,
        route: Route,
        request: IncomingRequest,
        event: dict[str, Any],
        caller: Caller,
        *,
        sink: ResponseSink | None,
    ) -> GatewayResult:
        relay = _StreamRelay(sink or _GatheredAnswer(), caller.request_id) if route.streaming else None
        result = self._runtime.invoke(route.function_id, event, caller.request_id, relay.feed if relay else None)
        if relay is not None and relay.started:
            return relay.finish(result, route, caller, sink)
        refusal, failure = self._failure(route, result, relay)
        if refusal is not None:
            refused = self._refuse(
                stage.responses, refusal, request, caller.request_id, route=route, api_key_id=caller.api_key_id
            )
            # What CloudWatch Logs would hold for the developer; never sent to the client.
            return dataclasses.replace(refused, detail=failure)
        response = read_proxy_response(result.payload)
        headers = [*response.headers, ("x-amzn-RequestId", caller.request_id)]
        return GatewayResult(response.status, headers, response.body, caller.request_id, route, None, caller.api_key_id)

    @staticmethod
    def _failure(
        route: Route, result: InvocationResult, relay: "_StreamRelay | None"
    ) -> tuple[ResponseType | Refusal | None, str | None]:
        """Why API Gateway answers instead of the function (and what its log would say), if it does."""
        if result.throttled:
            # Lambda's 429 TooManyRequestsException reaches a proxy integration's caller as a 500.
            return LAMBDA_THROTTLED, f"Lambda throttled the invocation: {_lambda_failure(result.error)}"
        timeout = STREAMING_INTEGRATION_TIMEOUT_SECONDS if route.streaming else INTEGRATION_TIMEOUT_SECONDS
        if result.duration_ms > timeout * 1000:
            return ResponseType.INTEGRATION_TIMEOUT, None
        if not result.ok:
            return ResponseType.LAMBDA_FAILURE, _lambda_failure(result.error)
        if relay is not None:
            # The function ended without a valid metadata prelude and delimiter: nothing could be streamed.
            return ResponseType.LAMBDA_FAILURE, relay.problem or "Malformed Lambda streaming response: no delimiter"
        try:
            read_proxy_response(result.payload)
        except MalformedProxyResponse as exc:
            return ResponseType.LAMBDA_FAILURE, f"Malformed Lambda proxy response: {exc}"
        return None, None

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


class _StreamRelay:
    """API Gateway's side of a streamed Lambda answer: the metadata up to the delimiter gives the status and
    headers, and what follows is the body, passed on piece by piece as it comes."""

    def __init__(self, sink: ResponseSink, request_id: str) -> None:
        self._sink = sink
        self._request_id = request_id
        self._head = bytearray()
        self.started = False
        self.client_gone = False
        self.problem: str | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []

    def feed(self, chunk: bytes) -> None:
        """offline.functions' on_chunk: raises StopStream when no more is wanted."""
        if self.started:
            self._send(self._sink.write, chunk)
            return
        self._head += chunk
        prelude, found, rest = bytes(self._head).partition(STREAM_DELIMITER)
        if not found:
            if len(self._head) > MAX_PRELUDE_BYTES:
                self.problem = "Malformed Lambda streaming response: no delimiter in the first 16 KB"
                raise StopStream
            return
        try:
            self.status, self.headers = stream_metadata(prelude)
        except ValueError as exc:
            self.problem = f"Malformed Lambda streaming response: {exc}"
            raise StopStream from exc
        self.headers.append(("x-amzn-RequestId", self._request_id))
        self.started = True
        self._send(lambda _: self._sink.start(self.status, self.headers), b"")
        if rest:
            self._send(self._sink.write, rest)

    def _send(self, action: Callable[[bytes], None], chunk: bytes) -> None:
        try:
            action(chunk)
        except OSError as exc:  # the client closed its connection
            self.client_gone = True
            raise StopStream from exc

    def finish(
        self, result: InvocationResult, route: Route, caller: Caller, sink: ResponseSink | None
    ) -> GatewayResult:
        if result.ok and not self.client_gone:
            self._sink.end()
        else:
            self._sink.cut()
        detail = None
        if self.client_gone:
            detail = "the client closed the connection before the end of the stream"
        elif not result.ok:
            detail = f"stream cut after the first byte: {_lambda_failure(result.error)}"
        gathered = self._sink if isinstance(self._sink, _GatheredAnswer) else None
        body = bytes(gathered.body) if gathered else b""
        return GatewayResult(
            self.status, self.headers, body, caller.request_id, route, None, caller.api_key_id, detail, sink is not None
        )


class _GatheredAnswer:
    """A ResponseSink that keeps the whole answer (a streaming route called without a client to stream to)."""

    def __init__(self) -> None:
        self.body = bytearray()

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        pass

    def write(self, chunk: bytes) -> None:
        self.body += chunk

    def end(self) -> None:
        pass

    def cut(self) -> None:
        pass


def stream_metadata(prelude: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status and headers from a streamed answer's metadata JSON (`statusCode`, `headers`, `multiValueHeaders`,
    `cookies` as Set-Cookie headers); ValueError when it is not that."""
    try:
        metadata = json.loads(prelude)
    except (ValueError, RecursionError) as exc:
        raise ValueError("the metadata is not JSON") from exc
    if not isinstance(metadata, dict):
        raise ValueError("the metadata is not a JSON object")
    status = metadata.get("statusCode", HTTPStatus.OK)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, values in (metadata.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    given = {name.lower() for name, _ in headers}
    for name, value in (metadata.get("headers") or {}).items():
        if str(name).lower() not in given:
            values = value if isinstance(value, list) else [value]
            headers.extend((str(name), str(item)) for item in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in metadata.get("cookies") or [])
    return status, headers


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
