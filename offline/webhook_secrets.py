"""The billing webhook's signing secrets offline: taken from PARAMS (StripeWebhookSecret, StandardWebhookSecret)
or generated at start, stored in the stack's BillingWebhookSecret as on AWS, and returned for stack.json
(`webhook_secrets`), so a script or a test can sign events for this stack (offline/billing_event.py)."""

import base64
import json
import secrets
from typing import Any, Final

import boto3

from offline.provision import ProvisionedStack

SECRET_LOGICAL_ID: Final = "BillingWebhookSecret"  # noqa: S105 - a logical id, not a secret
SCHEMES: Final = ("stripe", "standard")


def generate_signing_secret() -> str:
    """`whsec_` and 32 random bytes in base64: the Standard Webhooks form, which also serves as a Stripe one."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def ensure_webhook_secrets(
    provisioned: ProvisionedStack, endpoint_url: str | None = None, session: boto3.session.Session | None = None
) -> dict[str, str] | None:
    """Give every scheme without a secret a generated one; the active secret of each scheme (None when the
    template has no BillingWebhookSecret)."""
    arn = provisioned.secrets.get(SECRET_LOGICAL_ID)
    if arn is None:
        return None
    session = session or boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto takes any credentials; these are dummies
        region_name=provisioned.region,
    )
    client: Any = session.client("secretsmanager", region_name=provisioned.region, endpoint_url=endpoint_url)
    document = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    active = {}
    for scheme in SCHEMES:
        configured = _first(document.get(scheme))
        if configured is None:
            configured = generate_signing_secret()
            document[scheme] = [configured]
        active[scheme] = configured
    if document != json.loads(client.get_secret_value(SecretId=arn)["SecretString"]):
        client.put_secret_value(SecretId=arn, SecretString=json.dumps(document))
    return active


def _first(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    return next((item for item in values if isinstance(item, str) and item.strip()), None)
