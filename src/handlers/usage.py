"""GET /v1/usage: the caller's own standing in its quota period: requests against the plan's quota, tokens
against the tier's budget, its throttle. Served from our ledger, never from the management API."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.ai.service import usage_api
from core.observability import logger, tracer
from handlers.http_answers import json_response, openai_app

app = openai_app(refused="refused usage", failed="reading usage failed")


@app.get("/v1/usage")
@tracer.capture_method
def read_usage() -> Response[str]:
    api = usage_api()
    caller = api.caller(app.current_event.request_context.identity.api_key_id)
    body, rate_limits = api.usage(caller)
    return json_response(
        HTTPStatus.OK, body, rate_limits | {"x-request-id": app.current_event.request_context.request_id}
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
