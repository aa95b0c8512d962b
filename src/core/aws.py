"""boto3 clients with the project's retry policy, created in one place.

Throttling (TooManyRequestsException and friends) is retried by botocore's standard retry mode with
exponential backoff and jitter, never by hand-written loops. The endpoint comes from the environment
(AWS_ENDPOINT_URL), which is how the offline stack points the same code at its emulator.
"""

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_ssm import SSMClient

# Six attempts ride out a burst against API Gateway's 5 req/s CreateApiKey limit well inside the
# function's timeout; timeouts keep one stuck call from eating the whole invocation.
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=3,
    read_timeout=8,
)


# For a caller inside a time budget (signup, behind API Gateway's 29 s): short attempts, so that a deadline
# check before each one (core.adapters.apigateway.bound_by_deadline) can promise it ends in time.
BUDGETED_RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=1,
    read_timeout=3,
)
BUDGETED_ATTEMPT_SECONDS = 4.0  # connect_timeout + read_timeout
# One short attempt, for a step that may be skipped when time is short (signup's confirmation email).
SINGLE_ATTEMPT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=3)


def _client(service: str, config: Config = RETRY_CONFIG) -> Any:
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def apigateway_client(config: Config = RETRY_CONFIG) -> "APIGatewayClient":
    client: APIGatewayClient = _client("apigateway", config)
    return client


def dynamodb_client() -> "DynamoDBClient":
    client: DynamoDBClient = _client("dynamodb")
    return client


def s3_client() -> "S3Client":
    client: S3Client = _client("s3")
    return client


def secretsmanager_client() -> "SecretsManagerClient":
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def sns_client() -> "SNSClient":
    client: SNSClient = _client("sns")
    return client


def ses_client(config: Config = RETRY_CONFIG) -> "SESClient":
    client: SESClient = _client("ses", config)
    return client


def ssm_client() -> "SSMClient":
    client: SSMClient = _client("ssm")
    return client


def bedrock_runtime_client(read_timeout_seconds: float) -> "BedrockRuntimeClient":
    """Bedrock's runtime with one attempt: a retried model call could outlast API Gateway's 29 s, so
    throttling goes back to the caller as 429 (with Retry-After), whose client retries."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=3, read_timeout=read_timeout_seconds
    )
    client: BedrockRuntimeClient = boto3.client("bedrock-runtime", config=config)
    return client
