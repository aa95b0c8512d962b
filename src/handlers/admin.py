"""/admin/*: the operator console. IAM-authorized (SigV4, AWS_IAM on each route in template.yaml), no API key.

Each route parses its input, calls one AdminService method and answers in the control plane's shape. To add an
operation: a route here (its body model subclasses core.admin.models.OperatorRequest, so `reason` is required),
an Api event on AdminFunction in template.yaml with the same path and `Auth: {Authorizer: AWS_IAM,
ApiKeyRequired: false}`, and the service method (core.admin.service).
"""

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from core.admin.key_import import MAX_IMPORT_BYTES
from core.admin.models import (
    ActionResult,
    ExtensionRequest,
    ImportQuery,
    KeyRequest,
    Operator,
    OperatorRequest,
    PartnerQuery,
    TierRequest,
    UsageQuery,
)
from core.admin.service import admin_service, export_usage, key_importer
from core.errors import InvalidRequest, OperatorUnknown, PayloadTooLarge
from core.observability import logger, tracer
from handlers.http_answers import control_plane_app, json_response
from handlers.http_requests import body_bytes, json_body

MAX_BODY_BYTES = 16 * 1024

app = control_plane_app(refused="refused operator call", failed="operator call failed")


def require_operator(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Every route, reads included, answers only a caller IAM authenticated (defence in depth behind AWS_IAM)."""
    caller = operator()
    logger.append_keys(operator=caller.arn)
    return next_middleware(resolver)


app.use(middlewares=[require_operator])


@app.get("/admin/partners")
@tracer.capture_method
def list_partners() -> Response[str]:
    query = parse_query(PartnerQuery)
    return json_response(HTTPStatus.OK, admin_service().list_partners(query).model_dump(mode="json"))


@app.get("/admin/partners/<partner_id>")
@tracer.capture_method
def show_partner(partner_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, admin_service().show_partner(partner_id).model_dump(mode="json"))


@app.post("/admin/partners/<partner_id>/suspend")
@tracer.capture_method
def suspend_partner(partner_id: str) -> Response[str]:
    body = parse_body(OperatorRequest)
    return action_answer(admin_service().suspend(operator(), partner_id, body.reason))


@app.post("/admin/partners/<partner_id>/resume")
@tracer.capture_method
def resume_partner(partner_id: str) -> Response[str]:
    body = parse_body(OperatorRequest)
    return action_answer(admin_service().resume(operator(), partner_id, body.reason))


@app.post("/admin/partners/<partner_id>/tier")
@tracer.capture_method
def change_tier(partner_id: str) -> Response[str]:
    body = parse_body(TierRequest)
    return action_answer(admin_service().change_tier(operator(), partner_id, body.tier, body.reason))


@app.post("/admin/partners/<partner_id>/extensions")
@tracer.capture_method
def grant_extension(partner_id: str) -> Response[str]:
    body = parse_body(ExtensionRequest)
    return action_answer(admin_service().extend(operator(), partner_id, body.requests, body.tokens, body.reason))


@app.delete("/admin/partners/<partner_id>/key")
@tracer.capture_method
def revoke_key(partner_id: str) -> Response[str]:
    body = parse_body(OperatorRequest)
    return action_answer(admin_service().revoke(operator(), partner_id, body.reason))


@app.post("/admin/keys/import")
@tracer.capture_method(capture_response=False)
def import_keys() -> Response[str]:
    """The body is the CSV (key values in it): never logged, never traced, never answered."""
    query = parse_query(ImportQuery)
    event = app.current_event
    raw = body_bytes(event)
    if len(raw) > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(MAX_IMPORT_BYTES)
    report = admin_service().import_keys(operator(), key_importer(), raw, query.reason)
    return json_response(HTTPStatus.OK, report.as_dict())


@app.get("/admin/usage")
@tracer.capture_method(capture_response=False)
def usage_export() -> Response[str]:
    query = parse_query(UsageQuery)
    body = export_usage(query.period, query.format)
    if query.format == "json":
        return Response(status_code=HTTPStatus.OK, content_type="application/json; charset=utf-8", body=body)
    return Response(
        status_code=HTTPStatus.OK,
        content_type="text/csv; charset=utf-8",
        body=body,
        headers={"Content-Disposition": f'attachment; filename="usage-{query.period}.csv"'},
    )


@app.post("/admin/partners/<partner_id>/key")
@tracer.capture_method(capture_response=False)  # the answer holds the new key's value
def issue_key(partner_id: str) -> Response[str]:
    body = parse_body(KeyRequest)
    issued = admin_service().issue_key(operator(), partner_id, body)
    answer = issued.model_dump(mode="json") | {"api_key": issued.api_key.get_secret_value()}
    return json_response(HTTPStatus.OK, answer)


def action_answer(result: ActionResult) -> Response[str]:
    return json_response(HTTPStatus.OK, result.model_dump(mode="json"))


# --- Reading a call ---------------------------------------------------------------------------------------------


def operator() -> Operator:
    """Who calls: the IAM principal API Gateway authenticated (requestContext.identity)."""
    context = app.current_event.request_context
    identity = context.identity
    if not identity.user_arn:
        raise OperatorUnknown
    return Operator(arn=identity.user_arn, access_key=identity.access_key, request_id=context.request_id)


def parse_body[M: BaseModel](model: type[M]) -> M:
    return json_body(app.current_event, model, MAX_BODY_BYTES)


def parse_query[M: BaseModel](model: type[M]) -> M:
    """The query string as `model` (each parameter's last value); 400 naming each bad parameter."""
    parameters: dict[str, Any] = dict(app.current_event.query_string_parameters or {})
    try:
        return model.model_validate(parameters)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(part) for part in error["loc"]) or "query", "message": _message(error)}
            for error in exc.errors()
        ]
        raise InvalidRequest("query string is invalid", details) from None


def _message(error: Any) -> str:
    return "unknown parameter" if error["type"] == "extra_forbidden" else str(error["msg"])


# clear_state: the operator appended to the logger's keys belongs to one call only.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
