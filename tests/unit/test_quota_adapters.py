"""The quota monitor's AWS calls, pinned with botocore's Stubber (which checks every request against the
service model): GetUsage paging and pacing, SNS attributes, SES, the alert claim's conditional write."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from core.adapters.apigateway import ApiGateway
from core.adapters.quota_table import QuotaTable
from core.adapters.ses import SesEmail
from core.adapters.sns import AlertTopic
from core.errors import EmailRejected, ManagementApiThrottled
from core.pacing import TokenBucket
from core.quota import AlertClaim
from core.quota_alerts import Message


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def stubbed() -> Iterator[Any]:
    stubs: list[Stubber] = []

    def stub(service: str) -> tuple[Any, Stubber]:
        client = boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]
        stubber = Stubber(client)
        stubber.activate()
        stubs.append(stubber)
        return client, stubber

    yield stub
    for stubber in stubs:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def test_token_bucket_paces_to_its_rate_after_the_burst() -> None:
    # Given a bucket of 2 per second with a burst of 1, on a fake clock
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock, sleep=clock.sleep)

    # When five calls take a token each
    taken_at = []
    for _ in range(5):
        bucket.take()
        taken_at.append(clock.now)

    # Then the first goes at once and the others every half second: never faster than the rate
    assert taken_at == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_token_bucket_refuses_a_wait_that_never_ends() -> None:
    with pytest.raises(ValueError, match="never"):
        TokenBucket(rate=1, burst=1).take(2)


def test_get_usage_pages_with_the_maximum_page_size_and_paces_every_call(stubbed: Any) -> None:
    # Given a plan whose usage comes in two pages
    client, stubber = stubbed("apigateway")
    request = {"usagePlanId": "plan1", "startDate": "2026-03-01", "endDate": "2026-03-11", "limit": 500}
    stubber.add_response("get_usage", {"items": {"k1": [[1, 9]]}, "position": "next"}, request)
    stubber.add_response("get_usage", {"items": {"k2": [[2, 8]]}}, {**request, "position": "next"})
    clock = FakeClock()
    pacer = TokenBucket(rate=5, burst=1, clock=clock, sleep=clock.sleep)

    # When the adapter reads it
    pages = list(ApiGateway(client, pacer=pacer).usage_pages("plan1", date(2026, 3, 1), date(2026, 3, 11)))

    # Then one call per page, never per key, each paced
    assert pages == [{"k1": [[1, 9]]}, {"k2": [[2, 8]]}]
    assert clock.slept == pytest.approx([0.2])


def test_get_usage_throttled_after_retries_is_a_domain_error(stubbed: Any) -> None:
    client, stubber = stubbed("apigateway")
    stubber.add_client_error("get_usage", service_error_code="TooManyRequestsException", http_status_code=429)

    with pytest.raises(ManagementApiThrottled):
        list(ApiGateway(client).usage_pages("plan1", date(2026, 3, 1), date(2026, 3, 11)))


def test_alert_topic_sends_text_with_typed_attributes(stubbed: Any) -> None:
    client, stubber = stubbed("sns")
    stubber.add_response(
        "publish",
        {"MessageId": "m1"},
        {
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
            "Subject": "Quota 80% reached: Acme (free)",
            "Message": "body",
            "MessageAttributes": {
                "tier": {"DataType": "String", "StringValue": "free"},
                "threshold": {"DataType": "Number", "StringValue": "80"},
                "partner_id": {"DataType": "String.Array", "StringValue": '["p_1", "p_2"]'},
            },
        },
    )
    message = Message(
        "Quota 80% reached: Acme (free)", "body", {"tier": "free", "threshold": 80, "partner_id": ["p_1", "p_2"]}
    )

    assert AlertTopic("arn:aws:sns:us-east-1:123456789012:alerts", client).publish_message(message) == "m1"


def test_ses_sends_plain_text_from_the_sender_and_a_refusal_is_permanent(stubbed: Any) -> None:
    client, stubber = stubbed("ses")
    stubber.add_response(
        "send_email",
        {"MessageId": "s1"},
        {
            "Source": "alerts@example.com",
            "Destination": {"ToAddresses": ["dev@acme.example"]},
            "Message": {
                "Subject": {"Data": "subject", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "body", "Charset": "UTF-8"}},
            },
        },
    )
    stubber.add_client_error("send_email", service_error_code="MessageRejected", service_message="not verified")
    email = SesEmail("alerts@example.com", client)

    assert email.send("dev@acme.example", Message("subject", "body", {})) == "s1"
    with pytest.raises(EmailRejected, match="MessageRejected"):
        email.send("dev@acme.example", Message("subject", "body", {}))


CLAIM = AlertClaim(
    api_key_id="k1",
    period_start=datetime(2026, 3, 1, tzinfo=UTC),
    threshold=80,
    tier="free",
    partner_id="p_1",
    utilisation=81.25,
    expires_at=1775088000,
)


def test_an_alert_is_claimed_with_a_conditional_write_that_a_dead_run_can_lose(stubbed: Any) -> None:
    client, stubber = stubbed("dynamodb")
    stubber.add_response(
        "update_item",
        {"Attributes": {"operator_sent_at": {"S": "2026-03-11T00:00:00+00:00"}}},
        {
            "TableName": "metering",
            "Key": {"pk": {"S": "KEY#k1"}, "sk": {"S": "ALERT#2026-03-01T00:00:00Z#80"}},
            "UpdateExpression": ANY,
            "ConditionExpression": (
                "attribute_not_exists(pk) OR (attribute_not_exists(sent_at) AND claimed_until < :now)"
            ),
            "ExpressionAttributeValues": ANY,
            "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    )

    result = QuotaTable("metering", client).claim_alert(CLAIM, now=1_000.0, lease_seconds=900)

    # A takeover: the dead run had told the operators already, so only the partner's email is left
    assert result.state is not None
    assert result.state.claimed_until == 1_900
    assert result.state.operator_sent is True
    assert result.state.partner_email is None


def test_a_claim_held_or_sent_by_another_run_is_refused(stubbed: Any) -> None:
    client, stubber = stubbed("dynamodb")
    for item in ({"sent_at": {"S": "2026-03-11T00:00:00+00:00"}}, {"claimed_until": {"N": "2000"}}):
        stubber.add_client_error(
            "update_item",
            service_error_code="ConditionalCheckFailedException",
            http_status_code=400,
            response_meta={},
            modeled_fields={"Item": item},
        )
    table = QuotaTable("metering", client)

    sent = table.claim_alert(CLAIM, now=1_000.0, lease_seconds=900)
    held = table.claim_alert(CLAIM, now=1_000.0, lease_seconds=900)

    assert (sent.state, sent.already_sent) == (None, True)
    assert (held.state, held.already_sent) == (None, False)
