"""The OpenAI-compatible upstream's API key, read from Secrets Manager or an SSM SecureString parameter
with Powertools parameters (cached in the function for `max_age` seconds, so a rotated key is picked up).

Never from the environment: the environment only names where the key is. The secret is either the key
itself or a JSON object with an `api_key` field.
"""

import json
from typing import Literal

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from core.aws import secretsmanager_client, ssm_client
from core.errors import ProviderMisconfigured

KeySource = Literal["secretsmanager", "ssm"]


class UpstreamApiKey:
    def __init__(
        self,
        source: KeySource,
        name: str,
        max_age_seconds: int = 300,
        provider: SecretsProvider | SSMProvider | None = None,
    ) -> None:
        self._source = source
        self._name = name
        self._max_age = max_age_seconds
        self._provider = provider or (
            SecretsProvider(boto3_client=secretsmanager_client())
            if source == "secretsmanager"
            else SSMProvider(boto3_client=ssm_client())
        )

    def value(self) -> str:
        try:
            if isinstance(self._provider, SSMProvider):
                raw = self._provider.get(self._name, max_age=self._max_age, decrypt=True)
            else:
                raw = self._provider.get(self._name, max_age=self._max_age)
        except (GetParameterError, TransformParameterError) as exc:
            # The message names the secret, never its value.
            raise ProviderMisconfigured(f"cannot read the upstream API key from {self._source} {self._name!r}") from exc
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not isinstance(text, str) or not text.strip():
            raise ProviderMisconfigured(f"the upstream API key in {self._source} {self._name!r} is empty")
        return _key_from_secret(text.strip())


def _key_from_secret(text: str) -> str:
    if not text.startswith("{"):
        return text
    try:
        document = json.loads(text)
    except ValueError:
        return text
    key = document.get("api_key") if isinstance(document, dict) else None
    if not isinstance(key, str) or not key:
        raise ProviderMisconfigured("the upstream API key secret is JSON without an `api_key` string")
    return key
