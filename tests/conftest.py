"""Shared fixtures: an emulated AWS account (moto plus our API Gateway fidelity layer) provisioned from
template.yaml, and the signup function's environment read from the same template."""

import os

# Before anything creates a boto3 client: tests never reach AWS and never need credentials.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_DEV="false",
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

import io
import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from core.observability import logger
from core.settings import forget_settings
from core.signup.service import signup_service
from offline import apigateway_fidelity, dynamodb_fidelity
from offline.provision import ProvisionedStack, provision
from offline.template import StackTemplate, load_template


@pytest.fixture(scope="session")
def template() -> StackTemplate:
    return load_template()


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh emulated account with AWS's documented API Gateway behaviour, rate limits included."""
    apigateway_fidelity.install()
    dynamodb_fidelity.install()
    apigateway_fidelity.set_management_rate_limits(True)
    with mock_aws():
        yield


@pytest.fixture
def stack(aws: None, template: StackTemplate) -> ProvisionedStack:
    return provision(template)


def _function_environment(template: StackTemplate, stack: ProvisionedStack, logical_id: str) -> dict[str, str]:
    variables = template.resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return stack.environment(variables)


@pytest.fixture
def signup_env(stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The signup function's environment exactly as the template sets it, on the emulated stack."""
    for name, value in _function_environment(template, stack, "SignupFunction").items():
        monkeypatch.setenv(name, value)
    forget_settings()
    signup_service.cache_clear()
    yield
    forget_settings()
    signup_service.cache_clear()


@pytest.fixture
def operator_inbox(stack: ProvisionedStack) -> str:
    """An SQS queue subscribed to AlertTopic: what the operators' topic delivered."""
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"operators-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=stack.topics["AlertTopic"], Protocol="sqs", Endpoint=queue_arn)
    return queue_url


@pytest.fixture
def apigateway(aws: None) -> object:
    return boto3.client("apigateway")


@pytest.fixture
def dynamodb(aws: None) -> object:
    return boto3.client("dynamodb")


@pytest.fixture
def powertools_log() -> Iterator[io.StringIO]:
    """What our Powertools logger writes, as JSON lines (it writes to the stream it was created with)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
