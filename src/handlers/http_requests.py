"""Reading a REST API request, in one place for the control plane's handlers: the body's bytes, a JSON body as a
pydantic model, and a URL on the host and stage the request came through."""

import base64
import binascii

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, ValidationError

from core.errors import InvalidRequest, PayloadTooLarge, invalid_request


def body_bytes(event: APIGatewayProxyEvent) -> bytes:
    """The body as sent: API Gateway passes bytes it cannot pass as text base64-encoded (400 if that is not
    base64); text is kept as it came, unpaired surrogates included, for the JSON parser to refuse."""
    body = event.body
    if not body:
        return b""
    if not event.is_base64_encoded:
        return body.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InvalidRequest("the request body is not valid base64") from None


def json_body[M: BaseModel](event: APIGatewayProxyEvent, model: type[M], max_bytes: int) -> M:
    """The JSON body as `model`: 413 above `max_bytes`, 400 for anything not valid UTF-8 JSON of that shape."""
    raw = body_bytes(event)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise invalid_request(exc) from None


def url_on_this_stage(event: APIGatewayProxyEvent, route: str, target: str) -> str:
    """`target` on the host and stage through which `route` was called (a function cannot name its own API in
    its environment: the circular-dependency trap). http for the offline stack's localhost, else https."""
    context = event.request_context
    host = context.domain_name or event.headers.get("Host", "")
    local = host.split(":")[0] in ("localhost", "127.0.0.1")
    scheme = event.headers.get("X-Forwarded-Proto") or ("http" if local else "https")
    stage_path = (context.path or f"/{context.stage}{route}").removesuffix(route)
    return f"{scheme}://{host}{stage_path}{target}"
