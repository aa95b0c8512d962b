"""Fixtures for the API Gateway fidelity tests: the patched moto, fake clocks, and clients."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from mypy_boto3_apigateway import APIGatewayClient

from offline.apigateway_fidelity import RATE_LIMITS_ENV, install, set_management_rate_limits, set_wall_clock

REGION = "us-east-1"
# No botocore retries: a test that wants them builds its own client.
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@dataclass
class FakeClocks:
    """A monotonic clock and a wall clock that move only when a test moves them."""

    monotonic_seconds: float = 1_000.0
    wall: datetime = field(default_factory=lambda: datetime(2026, 3, 10, 12, 0, tzinfo=UTC))

    def monotonic(self) -> float:
        return self.monotonic_seconds

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.monotonic_seconds += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClocks]:
    """install() with fake clocks; management rate limits off unless a test turns them on."""
    install()
    monkeypatch.delenv(RATE_LIMITS_ENV, raising=False)
    fake = FakeClocks()
    set_management_rate_limits(False, clock=fake.monotonic)
    set_wall_clock(fake.now)
    yield fake
    set_management_rate_limits(None, clock=time.monotonic)
    set_wall_clock(None)


@pytest.fixture
def apigw(clocks: FakeClocks) -> Iterator[APIGatewayClient]:
    """An API Gateway client inside mock_aws, which starts every test from empty backends."""
    with mock_aws():
        yield boto3.client("apigateway", region_name=REGION, config=NO_RETRIES)
