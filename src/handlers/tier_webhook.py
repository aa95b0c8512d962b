"""POST /webhooks/billing: signed billing events move a partner's key between tiers (no API key: the signature
is the authentication)."""

import base64
import binascii
import warnings
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.billing.models import TierChangeOutcome
from core.billing.service import tier_change_service
from core.errors import DomainError, InvalidRequest, InvalidSignature, TierChangeFailed
from core.observability import logger, metrics, tracer
from handlers.http_answers import control_plane_app, json_response


def count_refusal(exc: DomainError, status: HTTPStatus) -> None:
    """Forged or stale signatures and failed changes are metrics operators alarm on."""
    if isinstance(exc, InvalidSignature):
        metrics.add_metric(name="WebhookSignatureFailures", unit=MetricUnit.Count, value=1)
    elif isinstance(exc, TierChangeFailed) and status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        metrics.add_metric(name="TierChangeFailures", unit=MetricUnit.Count, value=1)


app = control_plane_app(refused="refused billing webhook", failed="billing webhook failed", on_refusal=count_refusal)

# Most deliveries (duplicates, ignored types) add no metric; Powertools would warn on each (its documented way
# to silence that warning).
warnings.filterwarnings("ignore", message="No application metrics to publish")


@app.post("/webhooks/billing")
# The body is a billing event: traces keep neither it nor the answer.
@tracer.capture_method(capture_response=False)
def receive_billing_event() -> Response[str]:
    event = app.current_event
    outcome = tier_change_service().receive(raw_body(event.body, event.is_base64_encoded), event.headers)
    return json_response(answer_status(outcome), outcome.model_dump(mode="json", exclude_none=True))


def raw_body(body: str | None, is_base64_encoded: bool | None) -> bytes:
    """The bytes the sender signed: API Gateway passes text as is and binary as base64."""
    if not body:
        return b""
    if not is_base64_encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InvalidRequest("the request body is not valid base64") from None


def answer_status(outcome: TierChangeOutcome) -> HTTPStatus:
    # 202: acknowledged and recorded, not applied (a partner we do not know); the sender should stop retrying.
    return HTTPStatus.ACCEPTED if outcome.status == "recorded" else HTTPStatus.OK


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    tier_change_service().idempotency_config.register_lambda_context(context)
    return app.resolve(event, context)
