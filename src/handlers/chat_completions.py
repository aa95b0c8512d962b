"""POST /v1/chat/completions: OpenAI's chat completions, served by the deployment's model provider and
metered in tokens against the tier's budget (key required; requests metered by the usage plan)."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.ai.service import chat_api
from core.errors import InvalidRequest
from core.observability import logger, tracer
from handlers.http_answers import json_response, openai_app

app = openai_app(refused="refused chat completion", failed="chat completion failed")


@app.post("/v1/chat/completions")
# Prompts and completions are the partner's data: traces never record them.
@tracer.capture_method(capture_response=False)
def create_chat_completion() -> Response[str]:
    api = chat_api()
    caller = api.caller(app.current_event.request_context.identity.api_key_id)
    seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000
    completion = api.complete(caller, _body_text(), seconds_left)
    headers = completion.headers | {"x-request-id": app.current_event.request_context.request_id}
    return json_response(HTTPStatus.OK, completion.body(), headers)


def _body_text() -> str | None:
    try:
        return app.current_event.decoded_body
    except UnicodeDecodeError as exc:
        # API Gateway passes a body that is not UTF-8 text on base64-encoded.
        raise InvalidRequest("request body is not UTF-8 text") from exc


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
