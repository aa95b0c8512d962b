"""The offline stack's webhook signing secrets: taken from PARAMS or generated, stored in the stack's
BillingWebhookSecret as on AWS; and the provisioner's Secrets Manager secrets."""

import json
import string

import boto3
import pytest

from offline.provision import generated_secret_string, provision
from offline.template import load_template
from offline.webhook_secrets import ensure_webhook_secrets


@pytest.mark.usefixtures("aws")
def test_secrets_from_params_are_kept_and_missing_ones_generated() -> None:
    # Given PARAMS with a Stripe secret only
    template = load_template(overrides={"StripeWebhookSecret": "whsec_fromParams123"})
    stack = provision(template)

    # When the stack completes its secrets
    secrets = ensure_webhook_secrets(stack)

    # Then the given one is kept, the other generated, and the stack's secret holds both
    assert secrets is not None
    assert secrets["stripe"] == "whsec_fromParams123"
    assert secrets["standard"].startswith("whsec_") and len(secrets["standard"]) > 40
    stored = boto3.client("secretsmanager").get_secret_value(SecretId=stack.secrets["BillingWebhookSecret"])
    assert json.loads(stored["SecretString"]) == {"stripe": ["whsec_fromParams123"], "standard": [secrets["standard"]]}


@pytest.mark.usefixtures("aws")
def test_each_stack_gets_its_own_generated_secrets() -> None:
    first = ensure_webhook_secrets(provision(load_template(stack_name="one")))
    second = ensure_webhook_secrets(provision(load_template(stack_name="two")))

    assert first is not None and second is not None
    assert first["standard"] != second["standard"]
    assert first["stripe"] != second["stripe"]


def test_generate_secret_string_follows_its_settings() -> None:
    value = generated_secret_string({"PasswordLength": 20, "ExcludePunctuation": True, "ExcludeCharacters": "abc"})
    document = json.loads(
        generated_secret_string({"SecretStringTemplate": '{"user": "app"}', "GenerateStringKey": "password"})
    )

    assert len(value) == 20
    assert set(value) <= set(string.ascii_letters + string.digits) - set("abc")
    assert document["user"] == "app" and len(document["password"]) == 32
