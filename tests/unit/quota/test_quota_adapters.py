"""The quota monitor's AWS calls, pinned with botocore's Stubber (which checks every request against the
service model): GetUsage paging and pacing, SNS attributes, SES, the alert claim's conditional write."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from core.adapters.apigateway import ApiGateway
from core.adapters.partners_table import PartnerRecords
from core.adapters.ses import SesEmail
from core.adapters.sns import AlertTopic
from core.errors import EmailRejected, ManagementApiThrottled
from core.messages import Message
from core.pacing import TokenBucket
from core.quota.adapters.quota_table import QuotaTable
from core.quota.standing import AlertClaim, KeyQuotaReading


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


# --- Batches: DynamoDB may process part of a batch and hand back the rest (UnprocessedKeys/Items) ---------
# moto always processes everything, so these answers are stubbed in the shapes of botocore's model.
PERIOD = datetime(2026, 3, 1, tzinfo=UTC)
LEDGER_K1 = {"pk": {"S": "KEY#k1"}, "sk": {"S": "PERIOD#2026-03-01T00:00:00Z"}}
READING_K1 = {"pk": {"S": "KEY#k1"}, "sk": {"S": "QUOTA#2026-03-01T00:00:00Z"}}
LEDGER_K2 = {"pk": {"S": "KEY#k2"}, "sk": {"S": "PERIOD#2026-03-01T00:00:00Z"}}
READING_K2 = {"pk": {"S": "KEY#k2"}, "sk": {"S": "QUOTA#2026-03-01T00:00:00Z"}}


def ledger_item(key: dict[str, Any], prompt: int) -> dict[str, Any]:
    return {**key, "prompt_tokens": {"N": str(prompt)}, "completion_tokens": {"N": "1"}}


def test_unprocessed_keys_are_asked_again_until_every_item_is_read(stubbed: Any) -> None:
    # Given DynamoDB answers the first BatchGetItem with one item and hands two keys back unprocessed
    client, stubber = stubbed("dynamodb")
    clock = FakeClock()
    stubber.add_response(
        "batch_get_item",
        {
            "Responses": {"metering": [ledger_item(LEDGER_K1, 10)]},
            "UnprocessedKeys": {"metering": {"Keys": [READING_K1, LEDGER_K2]}},
        },
        {"RequestItems": {"metering": {"Keys": [LEDGER_K1, READING_K1, LEDGER_K2, READING_K2]}}},
    )
    stubber.add_response(
        "batch_get_item",
        {"Responses": {"metering": [ledger_item(LEDGER_K2, 20)]}, "UnprocessedKeys": {}},
        {"RequestItems": {"metering": {"Keys": [READING_K1, LEDGER_K2]}}},
    )

    # When the monitor reads two keys' records
    records = QuotaTable("metering", client, sleep=clock.sleep).read_period([("k1", PERIOD), ("k2", PERIOD)])

    # Then only the unprocessed keys were asked again, after a pause, and both ledgers were read
    assert clock.slept == [0.05]
    assert records[("k1", PERIOD)].tokens is not None
    assert records[("k1", PERIOD)].tokens.prompt_tokens == 10  # type: ignore[union-attr]
    assert records[("k2", PERIOD)].tokens.prompt_tokens == 20  # type: ignore[union-attr]


def test_unprocessed_writes_are_sent_again_until_every_reading_is_stored(stubbed: Any) -> None:
    # Given DynamoDB leaves the second of two puts unprocessed once
    client, stubber = stubbed("dynamodb")
    clock = FakeClock()
    readings = [reading_for("k1"), reading_for("k2")]
    stubber.add_response("batch_write_item", {"UnprocessedItems": {"metering": [put_of("k2")]}}, None)
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {"metering": [put_of("k2")]}})

    # When the monitor writes both readings
    QuotaTable("metering", client, sleep=clock.sleep).write_readings(readings)

    # Then the unprocessed put was sent again on its own, after a pause (the Stubber checked both requests)
    assert clock.slept == [0.05]


def test_a_batch_that_never_drains_fails_after_bounded_retries(stubbed: Any) -> None:
    # Given DynamoDB hands the same put back unprocessed every time
    client, stubber = stubbed("dynamodb")
    clock = FakeClock()
    for _ in range(8):
        stubber.add_response("batch_write_item", {"UnprocessedItems": {"metering": [put_of("k1")]}})

    # When the monitor writes the reading, Then it gives up after 8 attempts with a clear error
    with pytest.raises(RuntimeError, match="DynamoDB left 1 writes unprocessed"):
        QuotaTable("metering", client, sleep=clock.sleep).write_readings([reading_for("k1")])
    # And it backed off exponentially in between (about 6 s in all), not after the last attempt
    assert clock.slept == [0.05 * 2**attempt for attempt in range(7)]


def test_the_partner_lookup_asks_again_for_unprocessed_keys(stubbed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the partners table hands back one of two key-index entries unprocessed, once
    client, stubber = stubbed("dynamodb")
    monkeypatch.setattr("core.adapters.partners_table.time.sleep", lambda _: None)
    index = {key_id: {"pk": {"S": f"APIKEY#{key_id}"}} for key_id in ("k1", "k2")}
    stubber.add_response(
        "batch_get_item",
        {
            "Responses": {"partners": [{**index["k1"], "partner_id": {"S": "p_1"}}]},
            "UnprocessedKeys": {"partners": {"Keys": [index["k2"]]}},
        },
        {"RequestItems": {"partners": {"Keys": [index["k1"], index["k2"]]}}},
    )
    stubber.add_response(
        "batch_get_item",
        {"Responses": {"partners": [{**index["k2"], "partner_id": {"S": "p_2"}}]}},
        {"RequestItems": {"partners": {"Keys": [index["k2"]]}}},
    )
    stubber.add_response(
        "batch_get_item",
        {"Responses": {"partners": [partner_item("p_1", "k1"), partner_item("p_2", "k2")]}},
        {"RequestItems": {"partners": {"Keys": [{"pk": {"S": "PARTNER#p_1"}}, {"pk": {"S": "PARTNER#p_2"}}]}}},
    )

    # When the monitor looks up the partners of both keys
    partners = PartnerRecords("partners", client).partners_by_api_key_ids(["k1", "k2"])

    # Then neither is lost
    assert {key_id: partner.partner_id for key_id, partner in partners.items()} == {"k1": "p_1", "k2": "p_2"}


def test_the_partner_lookup_gives_up_after_bounded_retries(stubbed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the partners table hands the same key back unprocessed every time
    client, stubber = stubbed("dynamodb")
    slept: list[float] = []
    monkeypatch.setattr("core.adapters.partners_table.time.sleep", slept.append)
    for _ in range(8):
        stubber.add_response(
            "batch_get_item", {"Responses": {}, "UnprocessedKeys": {"partners": {"Keys": [{"pk": {"S": "APIKEY#k1"}}]}}}
        )

    # When the monitor looks up its partner, Then it fails with a clear error after 8 backed-off attempts
    with pytest.raises(RuntimeError, match="unprocessed after 8 attempts"):
        PartnerRecords("partners", client).partners_by_api_key_ids(["k1"])
    assert slept[:7] == [0.05 * 2**attempt for attempt in range(7)]


def reading_for(key_id: str) -> KeyQuotaReading:
    return KeyQuotaReading(
        api_key_id=key_id,
        period_start=PERIOD,
        tier="free",
        used=5,
        remaining=95,
        limit=100,
        as_of="2026-03-10T00:00:00+00:00",
        requests=5,
        tokens_used=None,
        alerted_threshold=None,
        expires_at=1775088000,
    )


def put_of(key_id: str) -> dict[str, Any]:
    return {
        "PutRequest": {
            "Item": {
                "pk": {"S": f"KEY#{key_id}"},
                "sk": {"S": "QUOTA#2026-03-01T00:00:00Z"},
                "tier": {"S": "free"},
                "used": {"N": "5"},
                "remaining": {"N": "95"},
                "limit": {"N": "100"},
                "as_of": {"S": "2026-03-10T00:00:00+00:00"},
                "requests": {"N": "5"},
                "expires_at": {"N": "1775088000"},
            }
        }
    }


def partner_item(partner_id: str, key_id: str) -> dict[str, Any]:
    values = {
        "pk": f"PARTNER#{partner_id}",
        "partner_id": partner_id,
        "name": "Acme",
        "email": "dev@acme.example",
        "tier": "free",
        "api_key_id": key_id,
        "key_prefix": "abcd",
        "status": "ACTIVE",
        "created_at": "2026-03-01T00:00:00+00:00",
        "updated_at": "2026-03-01T00:00:00+00:00",
    }
    return {name: {"S": value} for name, value in values.items()}
