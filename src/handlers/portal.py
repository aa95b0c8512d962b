"""GET /portal and GET /portal/{asset}: the partner portal's pages, served by the stack itself on the API's
own origin (no CORS), public; and lost-key recovery: POST /portal/recover (a link by email) and POST
/portal/recover/key (the link's token -> a new key, shown once). Every answer, errors included, carries the
portal's security headers."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from core.observability import logger, tracer
from core.portal.recovery import key_recovery
from core.portal.service import CONFIG, INDEX, SECURITY_HEADERS, asset, deployment_config
from handlers.http_answers import control_plane_app, json_response
from handlers.http_requests import json_body, url_on_this_stage

MAX_BODY_BYTES = 2048

app = control_plane_app(refused="refused portal request", failed="serving the portal failed")


@app.get("/portal")
def index() -> Response[str]:
    return _asset(INDEX)


@app.get("/portal/<name>")
def portal_asset(name: str) -> Response[str]:
    if name == CONFIG:
        return json_response(HTTPStatus.OK, deployment_config())
    return _asset(name)


class RecoveryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")


class RecoveryKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    token: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


# The same answer whether or not the address is registered (core.portal.recovery).
LINK_REQUESTED = {
    "status": "requested",
    "message": "If a partner is registered with this address, a recovery link is on its way (valid 15 minutes).",
}


@app.post("/portal/recover")
@tracer.capture_method
def request_recovery() -> Response[str]:
    body = json_body(app.current_event, RecoveryRequest, MAX_BODY_BYTES)
    event = app.current_event
    key_recovery().request_link(
        body.email,
        event.request_context.identity.source_ip or "unknown",
        url_on_this_stage(event, "/portal/recover", "/portal"),
    )
    return json_response(HTTPStatus.ACCEPTED, LINK_REQUESTED)


@app.post("/portal/recover/key")
@tracer.capture_method(capture_response=False)  # the answer holds the new key's value
def recover_key() -> Response[str]:
    body = json_body(app.current_event, RecoveryKeyRequest, MAX_BODY_BYTES)
    recovered = key_recovery().recover(body.token)
    return json_response(
        HTTPStatus.OK,
        {
            "partner_id": recovered.partner_id,
            "api_key_id": recovered.api_key_id,
            "api_key": recovered.api_key.get_secret_value(),
        },
    )


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
    if str(event.get("path") or "").endswith("/portal/"):
        # `/portal/` reaches the `/portal` resource; the page's relative asset links need `/portal`.
        return _with_security_headers(_to_portal())
    return _with_security_headers(app.resolve(event, context))


def _to_portal() -> dict[str, Any]:
    # Relative, so it holds under any stage or custom domain base path: <base>/portal/ -> <base>/portal.
    return {
        "statusCode": HTTPStatus.MOVED_PERMANENTLY,
        "multiValueHeaders": {"Location": ["../portal"], "Content-Type": [content_types.TEXT_PLAIN]},
        "body": "Moved to ../portal",
        "isBase64Encoded": False,
    }
