"""GET /portal and GET /portal/{asset}: the partner portal's pages, served by the stack itself on the API's
own origin (no CORS), public. Every answer, errors included, carries the portal's security headers."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.observability import logger, tracer
from core.portal.service import CONFIG, INDEX, SECURITY_HEADERS, asset, deployment_config
from handlers.http_answers import control_plane_app, json_response

app = control_plane_app(refused="refused portal request", failed="serving the portal failed")


@app.get("/portal")
def index() -> Response[str]:
    return _asset(INDEX)


@app.get("/portal/<name>")
def portal_asset(name: str) -> Response[str]:
    if name == CONFIG:
        return json_response(HTTPStatus.OK, deployment_config())
    return _asset(name)


@app.not_found
def no_such_path(exc: Exception) -> Response[str]:
    # A path API Gateway routed here that is no file of ours (`{asset}` with an encoded slash, say).
    return _not_found()


def _not_found() -> Response[str]:
    return Response(status_code=HTTPStatus.NOT_FOUND, content_type=content_types.TEXT_PLAIN, body="Not found")


def _asset(name: str) -> Response[str]:
    found = asset(name)
    if found is None:
        return _not_found()
    return Response(status_code=HTTPStatus.OK, content_type=found.content_type, body=found.body)


def _with_security_headers(result: dict[str, Any]) -> dict[str, Any]:
    # After the resolver, so its own answers (an unknown route, an unexpected error) get them too.
    multi = result.get("multiValueHeaders") or {}
    for name, value in SECURITY_HEADERS.items():
        multi[name] = [value]
    result["multiValueHeaders"] = multi
    return result


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _with_security_headers(app.resolve(event, context))
