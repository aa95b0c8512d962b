"""POST /signup: a partner gets an API key on a self-service tier."""

import base64
import binascii
import re
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from core.errors import InvalidRequest, invalid_request
from core.observability import logger, tracer
from core.signup.models import SignedUpPartner, SignupRequest
from core.signup.service import signup_service
from handlers.http_answers import control_plane_app, json_response
from handlers.http_requests import url_on_this_stage

MAX_BODY_BYTES = 4096
# secrets.token_urlsafe(32): 43 URL-safe base64 characters.
CONFIRMATION_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")

app = control_plane_app(refused="refused signup", failed="signup failed")


@app.post("/signup")
# Responses carry the key value: tracing must never record them.
@tracer.capture_method(capture_response=False)
def sign_up() -> Response[str]:
    service = signup_service()
    if service.double_opt_in:
        service.request_signup(
            parse_signup(request_body(app.current_event)),
            url_on_this_stage(app.current_event, "/signup", "/signup/confirm"),
        )
        return json_response(
            HTTPStatus.ACCEPTED,
            {
                "status": "confirmation_sent",
                "message": "open the link we emailed to this address to get your API key",
            },
        )
    result = service.sign_up(
        parse_signup(request_body(app.current_event)),
        idempotency_key=app.current_event.headers.get("Idempotency-Key"),  # headers are case-insensitive
        remaining_ms=app.lambda_context.get_remaining_time_in_millis(),
        confirm_url=url_on_this_stage(app.current_event, "/signup", "/signup/confirm"),
    )
    return json_response(HTTPStatus.CREATED, signed_up_body(result))


@app.get("/signup/confirm")
def confirm_email() -> Response[str]:
    token = app.current_event.get_query_string_value("token") or ""
    if not CONFIRMATION_TOKEN.fullmatch(token):
        raise InvalidRequest("the link's token is missing or malformed", [{"field": "token", "message": "invalid"}])
    result = signup_service().confirm(token, remaining_ms=app.lambda_context.get_remaining_time_in_millis())
    if isinstance(result, SignedUpPartner):  # a double opt-in signup: the key, shown this once
        return json_response(HTTPStatus.CREATED, signed_up_body(result))
    partner_id = result
    return json_response(
        HTTPStatus.OK,
        {"partner_id": partner_id, "email_confirmed": True, "message": "your address is confirmed for quota alerts"},
    )


def request_body(event: APIGatewayProxyEvent) -> str | None:
    """The body as text. API Gateway hands over bytes it cannot pass as text base64-encoded: those must be
    UTF-8 (RFC 8259), and anything else is the caller's mistake, not ours."""
    if not event.is_base64_encoded or event.body is None:
        return event.body
    try:
        raw = base64.b64decode(event.body, validate=True)
    except binascii.Error as exc:
        raise InvalidRequest("request body is not valid base64") from exc
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not valid UTF-8 (JSON must be UTF-8)") from exc


def parse_signup(body: str | None) -> SignupRequest:
    if not body:
        raise InvalidRequest("request body is required")
    if len(body.encode(errors="surrogatepass")) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return SignupRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc) from exc


def signed_up_body(result: SignedUpPartner) -> dict[str, Any]:
    body = result.model_dump(mode="json")
    body["api_key"] = result.api_key.get_secret_value() if result.api_key else None
    if result.email_confirmation is None:
        del body["email_confirmation"]
    return body


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    signup_service().idempotency_config.register_lambda_context(context)
    return app.resolve(event, context)
