"""Secrets Manager adapter: JSON secrets read through Powertools parameters, with a short cache."""

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import ClientError

from core.aws import secretsmanager_client
from core.errors import SigningSecretUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class JsonSecret:
    """One Secrets Manager secret holding a JSON object, re-read at most every `max_age_seconds`.

    The value never leaves this process: it is not logged, and Powertools keeps it in memory only.
    """

    def __init__(self, secret_id: str, max_age_seconds: int = 60, client: "SecretsManagerClient | None" = None) -> None:
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._provider = SecretsProvider(boto3_client=client or secretsmanager_client())

    def read(self) -> dict[str, Any]:
        try:
            value = self._provider.get(self._secret_id, transform="json", max_age=self._max_age)
        except TransformParameterError:
            # The parser's message may quote part of the secret: neither chain nor repeat it.
            raise SigningSecretUnavailable("the signing secret is not a JSON object") from None
        except GetParameterError as exc:
            cause = exc.__cause__
            code = cause.response.get("Error", {}).get("Code", "") if isinstance(cause, ClientError) else ""
            raise SigningSecretUnavailable(
                f"the signing secret cannot be read ({code or type(cause).__name__})"
            ) from exc
        if not isinstance(value, dict):
            raise SigningSecretUnavailable("the signing secret is not a JSON object")
        return value
