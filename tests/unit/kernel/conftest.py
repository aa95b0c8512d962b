"""The kernel adapters' Stubber fixture: botocore checks every stubbed request against the service model."""

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from core.adapters.apigateway import ApiGateway


@pytest.fixture
def stubbed() -> Iterator[tuple[ApiGateway, Stubber]]:
    client = boto3.client("apigateway", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield ApiGateway(client), stubber
        stubber.assert_no_pending_responses()
