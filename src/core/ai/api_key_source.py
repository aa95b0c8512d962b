"""Where the AI API finds a caller's API key: `x-api-key: <key>` or `Authorization: Bearer <key>`.

One rule, used by the API's Lambda authorizer (which hands the key to API Gateway as usageIdentifierKey)
and by the offline gateway (offline/api_keys.py), so the two cannot disagree. Standard library only: the
authorizer runs on every request and its cold start must stay small.

`x-api-key` wins when both are sent: the OpenAI SDK always sends `Authorization` with whatever `api_key` it
was given, so a client that adds `x-api-key` through `default_headers` means that one.
"""

from collections.abc import Mapping

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
BEARER = "bearer"


def key_from_headers(headers: Mapping[str, str | None]) -> str | None:
    """The API key a request carries, or None. Header names are matched case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items() if value is not None}
    explicit = (lowered.get(API_KEY_HEADER) or "").strip()
    if explicit:
        return explicit
    return _bearer_token(lowered.get(AUTHORIZATION_HEADER) or "")


def _bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    # Another scheme (SigV4, Basic...) is not an API key; a token with spaces in it is not one either.
    if scheme.lower() != BEARER or not token or any(character.isspace() for character in token):
        return None
    return token
