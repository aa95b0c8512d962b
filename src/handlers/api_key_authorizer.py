"""The AI API's Lambda REQUEST authorizer (API key source AUTHORIZER): hands API Gateway the key the caller
sent, as `x-api-key` or `Authorization: Bearer`, in `usageIdentifierKey`.

It decides nothing else. API Gateway itself then checks the key against the stage's usage plans (403
Forbidden for a missing, unknown or disabled key), throttles and applies the quota, as with the header
source: no lookup here, and no management-API call. It runs on every request (no authorizer cache, see
docs/decisions.md), so it imports nothing but the standard library and logs nothing: the key is a secret.
"""

from typing import Any

from core.ai.api_key_source import key_from_headers

# Not the key, which would then show in $context.authorizer.principalId and in access logs.
PRINCIPAL_ID = "api-key"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": PRINCIPAL_ID,
        # Allow exactly the method being called (there is no cache for a wider policy to serve).
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}],
        },
    }
    key = key_from_headers(event.get("headers") or {})
    if key:
        answer["usageIdentifierKey"] = key
    return answer
