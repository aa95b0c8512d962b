"""GET /v1/models: the models the caller's tier may use, in OpenAI's list shape (key required, metered)."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.ai.service import models_api
from core.observability import logger, tracer
from handlers.http_answers import json_response, openai_app

app = openai_app(refused="refused listing models", failed="listing models failed")


@app.get("/v1/models")
@tracer.capture_method
def list_models() -> Response[str]:
    api = models_api()
    caller = api.caller(app.current_event.request_context.identity.api_key_id)
    body, rate_limits = api.list_models(caller)
    return json_response(HTTPStatus.OK, body, rate_limits | _request_id())


def _request_id() -> dict[str, str]:
    # OpenAI's SDKs expose x-request-id as the response's request id: API Gateway's, for support.
    return {"x-request-id": app.current_event.request_context.request_id}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
