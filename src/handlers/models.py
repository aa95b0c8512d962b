"""GET /v1/models: the models this API serves, in OpenAI's list shape (key required, metered by plan)."""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.config import ModelsSettings, models_settings
from core.http_errors import error_response, json_response
from core.observability import logger, tracer

app = APIGatewayRestResolver()


@app.get("/v1/models")
@tracer.capture_method
def list_models() -> Response[str]:
    return json_response(HTTPStatus.OK, model_list(models_settings()))


def model_list(settings: ModelsSettings) -> dict[str, Any]:
    """OpenAI's `GET /v1/models` body; `created` is 0 because the models have no creation time here."""
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": settings.models_owner}
            for model in settings.models
        ],
    }


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def on_unexpected_error(exc: Exception) -> Response[str]:
    logger.exception("listing models failed")
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
