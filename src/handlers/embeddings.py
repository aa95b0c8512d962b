"""POST /v1/embeddings: OpenAI's embeddings, served by the deployment's provider and metered in tokens against
the tier's budget (key required; requests metered by the usage plan)."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.ai.embeddings_service import embeddings_api
from core.errors import InvalidRequest
from core.observability import logger, tracer
from handlers.http_answers import openai_app

app = openai_app(refused="refused embeddings", failed="embeddings failed")


@app.post("/v1/embeddings")
# Inputs and vectors are the partner's data: traces never record them.
@tracer.capture_method(capture_response=False)
def create_embeddings() -> Response[str]:
    api = embeddings_api()
    caller = api.caller(app.current_event.request_context.identity.api_key_id)
    seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000
    embeddings = api.embed(caller, _body_text(), seconds_left)
    # The body is already JSON (its size was checked against Lambda's limit).
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=embeddings.text,
        headers=embeddings.headers | {"x-request-id": app.current_event.request_context.request_id},
    )


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
