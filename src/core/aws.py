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
    from mypy_boto3_dynamodb import DynamoDBClient

# Six attempts ride out a burst against API Gateway's 5 req/s CreateApiKey limit well inside the
# function's timeout; timeouts keep one stuck call from eating the whole invocation.
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=3,
    read_timeout=8,
)


def _client(service: str) -> Any:
    return boto3.client(service, config=RETRY_CONFIG)  # type: ignore[call-overload]


def apigateway_client() -> "APIGatewayClient":
    client: APIGatewayClient = _client("apigateway")
    return client


def dynamodb_client() -> "DynamoDBClient":
    client: DynamoDBClient = _client("dynamodb")
    return client
