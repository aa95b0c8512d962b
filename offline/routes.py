"""The REST APIs and routes the template declares, read with SAM CLI's ApiProvider, and matching a request
path to a route the way API Gateway does (literal segments before {param}, before {proxy+})."""

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from samcli.lib.providers.api_provider import ApiProvider

from offline.template import StackTemplate, TemplateError

SERVERLESS_API = "AWS::Serverless::Api"
# SAM's logical id for the API it creates from functions' Api events that name no RestApiId.
IMPLICIT_API = "ServerlessRestApi"

# SAM CLI warns on every read of an API with a Lambda authorizer that `sam local` runs authorizers with
# limited fidelity. The offline stack does not run them: what it does instead is in docs/offline.md.
logging.getLogger("samcli.lib.providers.api_collector").setLevel(logging.ERROR)


@dataclass(frozen=True)
class ApiSpec:
    """One AWS::Serverless::Api: its stage and what its gateway enforces besides routes."""

    logical_id: str
    stage_name: str
    api_key_required: bool
    key_source: str  # HEADER or AUTHORIZER (ApiKeySourceType)
    default_authorizer: str = "NONE"  # Auth.DefaultAuthorizer: NONE, AWS_IAM or an authorizer's logical id
    binary_media_types: tuple[str, ...] = ()
    method_settings: tuple[dict[str, Any], ...] = ()
    gateway_responses: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One method on one resource path, integrated with a function (Lambda proxy)."""

    method: str
    resource_path: str
    function_id: str
    api_id: str
    api_key_required: bool
    request_schema: dict[str, Any] | None = None  # set when the event's RequestModel has ValidateBody
    # Authorizer AWS_IAM (on the event, or the API's default): the gateway verifies a SigV4 signature.
    iam_auth: bool = False
    # The Api event's ResponseTransferMode is RESPONSE_STREAM: the integration streams (responseTransferMode
    # STREAM, InvokeWithResponseStream) instead of buffering the function's answer.
    streaming: bool = False


def declared_apis(template: StackTemplate) -> dict[str, ApiSpec]:
    apis = {}
    for logical_id, props in template.of_type(SERVERLESS_API).items():
        auth = props.get("Auth") or {}
        apis[logical_id] = ApiSpec(
            logical_id=logical_id,
            stage_name=str(props.get("StageName") or "Prod"),
            api_key_required=_true(auth.get("ApiKeyRequired")),
            key_source=str(props.get("ApiKeySourceType") or "HEADER"),
            default_authorizer=str(auth.get("DefaultAuthorizer") or "NONE"),
            binary_media_types=tuple(str(item).replace("~1", "/") for item in props.get("BinaryMediaTypes") or []),
            method_settings=tuple(props.get("MethodSettings") or []),
            gateway_responses=dict(props.get("GatewayResponses") or {}),
            models=dict(props.get("Models") or {}),
        )
    return apis


def declared_routes(template: StackTemplate, apis: dict[str, ApiSpec]) -> list[Route]:
    """Every REST route of the template (HttpApi routes are not emulated), with its key and model rules."""
    functions = template.of_type("AWS::Serverless::Function")
    routes = []
    for provided in ApiProvider(template.stacks).routes:
        if provided.event_type != "Api" or provided.function_name not in functions:
            continue
        for method in provided.methods:
            event = _api_event(functions[provided.function_name], provided.path, method)
            api_id = str(event.get("RestApiId") or IMPLICIT_API) if event else _only(apis)
            api = apis.get(api_id)
            if api is None:
                raise TemplateError(
                    f"route {method} {provided.path} belongs to {api_id}, which is not an {SERVERLESS_API}"
                )
            auth = event.get("Auth") or {}
            key_required = _true(auth["ApiKeyRequired"]) if "ApiKeyRequired" in auth else api.api_key_required
            authorizer = str(auth.get("Authorizer") or api.default_authorizer)
            routes.append(
                Route(
                    method=method,
                    resource_path=provided.path,
                    function_id=provided.function_name,
                    api_id=api_id,
                    api_key_required=key_required,
                    iam_auth=authorizer == "AWS_IAM",
                    request_schema=_request_schema(event, api),
                    streaming=str(event.get("ResponseTransferMode", "")).upper() == "RESPONSE_STREAM",
                )
            )
    return routes


def _api_event(function: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    for event in (function.get("Events") or {}).values():
        props = event.get("Properties") or {}
        declared = str(props.get("Method", "")).upper()
        if event.get("Type") == "Api" and props.get("Path") == path and declared in (method, "ANY"):
            return dict(props)
    return {}


def _only(apis: dict[str, ApiSpec]) -> str:
    # A route from an OpenAPI DefinitionBody has no event to name its API; with one API there is no doubt.
    if len(apis) != 1:
        raise TemplateError("routes defined only in an OpenAPI body need exactly one AWS::Serverless::Api")
    return next(iter(apis))


def _request_schema(event: dict[str, Any], api: ApiSpec) -> dict[str, Any] | None:
    model = event.get("RequestModel") or {}
    # SAM adds a request validator only when ValidateBody or ValidateParameters is set; body off by default.
    if not _true(model.get("ValidateBody")) or "Model" not in model:
        return None
    schema = api.models.get(str(model["Model"]))
    return dict(schema) if isinstance(schema, dict) else None


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


class RouteTable:
    """Finds the route for a method and a stage-relative path, with its path parameters (URL-decoded)."""

    def __init__(self, routes: list[Route]) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        patterns: list[tuple[tuple[int, ...], re.Pattern[str], Route]] = []
        for route in routes:
            if "{" not in route.resource_path:
                self._exact[(route.method, route.resource_path)] = route
            else:
                patterns.append((_specificity(route.resource_path), _compile(route.resource_path), route))
        # API Gateway prefers a literal segment to a {param}, and a {param} to a greedy {proxy+}.
        self._patterns = [(pattern, route) for _, pattern, route in sorted(patterns, key=lambda item: item[0])]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        found = self._match(method, path)
        if found is None and len(path) > 1 and path.endswith("/"):
            # API Gateway's REST APIs route `/portal/` to the `/portal` resource (the path passed on keeps the slash).
            found = self._match(method, path.rstrip("/"))
        return found

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        for pattern, candidate in self._patterns:
            if candidate.method != method:
                continue
            found = pattern.fullmatch(path)
            if found:
                return candidate, {name: unquote(value) for name, value in found.groupdict().items()}
        return None


def _specificity(resource_path: str) -> tuple[int, ...]:
    kinds = []
    for segment in resource_path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            kinds.append(2)
        elif segment.startswith("{"):
            kinds.append(1)
        else:
            kinds.append(0)
    return tuple(kinds)


def _compile(resource_path: str) -> re.Pattern[str]:
    parts = []
    for segment in resource_path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{_group(segment[1:-2])}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{_group(segment[1:-1])}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts))


def _group(name: str) -> str:
    if not name.isidentifier():
        raise TemplateError(f"path parameter {{{name}}} is not emulated: use letters, digits and underscores")
    return name
