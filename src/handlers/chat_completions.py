"""POST /v1/chat/completions: OpenAI's chat completions, served by the deployment's model provider and
metered in tokens against the tier's budget (key required; requests metered by the usage plan)."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.ai.service import chat_api
from core.errors import DomainError, InvalidRequest
from core.http_errors import json_response, openai_domain_error_response, openai_error_response
from core.observability import logger, tracer

app = APIGatewayRestResolver()


@app.post("/v1/chat/completions")
# Prompts and completions are the partner's data: traces never record them.
@tracer.capture_method(capture_response=False)
def create_chat_completion() -> Response[str]:
    api = chat_api()
    caller = api.caller(app.current_event.request_context.identity.api_key_id)
    seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000
    completion = api.complete(caller, _body_text(), seconds_left)
    return json_response(
        HTTPStatus.OK, completion.body(), {"x-request-id": app.current_event.request_context.request_id}
    )


def _body_text() -> str | None:
    try:
        return app.current_event.decoded_body
    except UnicodeDecodeError as exc:
        # API Gateway passes a body that is not UTF-8 text on base64-encoded.
        raise InvalidRequest("request body is not UTF-8 text") from exc


@app.exception_handler(DomainError)  # type: ignore[untyped-decorator]
def on_domain_error(exc: DomainError) -> Response[str]:
    response = openai_domain_error_response(exc)
    log = logger.info if response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR else logger.error
    # exc.message may hold the provider's own error text: logged for operators, never sent to the caller.
    log("refused chat completion", reason=type(exc).__name__, error=exc.message)
    return response


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def on_unexpected_error(exc: Exception) -> Response[str]:
    logger.exception("chat completion failed")
    return openai_error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR, "server_error", "internal error", code="internal_error"
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
