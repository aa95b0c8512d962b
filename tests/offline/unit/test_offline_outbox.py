"""Email that AWS would send lands in the outbox: SNS email subscriptions and SES sends, one .eml each."""

import email
import json
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline import outbox

REGION = "us-east-1"


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[Path]:
    outbox.install(outbox.Outbox(tmp_path / "outbox"))
    try:
        with mock_aws():
            yield tmp_path / "outbox"
    finally:
        outbox.uninstall()


def messages(folder: Path) -> list[Message]:
    return [email.message_from_bytes(path.read_bytes()) for path in sorted(folder.glob("*.eml"))]


def text(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def topic_with(protocol: str, endpoint: str, **attributes: Any) -> tuple[Any, str]:
    sns = boto3.client("sns", region_name=REGION)
    arn = sns.create_topic(Name="alerts")["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint, Attributes=attributes)
    return sns, arn


def test_a_publish_to_an_email_subscription_is_one_readable_message(mailbox: Path) -> None:
    # Given a topic with an email subscriber
    sns, arn = topic_with("email", "ops@example.com")

    # When an alert is published with attributes
    sns.publish(
        TopicArn=arn,
        Subject="Quota alert",
        Message="acme is at 80%",
        MessageAttributes={"tier": {"DataType": "String", "StringValue": "free"}},
    )

    # Then the subscriber's message is in the outbox: who, what, and the attributes
    [message] = messages(mailbox)
    assert (message["To"], message["Subject"], message["X-Offline-Source"]) == ("ops@example.com", "Quota alert", "sns")
    assert message["From"] == "AWS Notifications <no-reply@sns.amazonaws.com>"
    assert message["X-SNS-Topic-Arn"] == arn
    assert message["X-SNS-Attribute-tier"] == "free"
    assert text(message).startswith("acme is at 80%")
    assert "tier: free" in text(message)


def test_a_message_structure_gives_the_email_subscriber_its_own_text(mailbox: Path) -> None:
    sns, arn = topic_with("email", "ops@example.com")
    sns.publish(
        TopicArn=arn, MessageStructure="json", Message=json.dumps({"default": "short", "email": "the long version"})
    )
    [message] = messages(mailbox)
    assert message["Subject"] == "AWS Notification Message"  # SNS's subject when the publisher gives none
    assert text(message).strip() == "the long version"


def test_a_filter_policy_that_rejects_the_message_sends_nothing(mailbox: Path) -> None:
    sns, arn = topic_with("email", "ops@example.com", FilterPolicy=json.dumps({"tier": ["pro"]}))
    sns.publish(
        TopicArn=arn,
        Message="free tier news",
        MessageAttributes={"tier": {"DataType": "String", "StringValue": "free"}},
    )
    assert messages(mailbox) == []


def test_other_protocols_are_not_email(mailbox: Path) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=sqs.create_queue(QueueName="q")["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    sns, arn = topic_with("sqs", queue_arn)
    sns.publish(TopicArn=arn, Message="to a queue")
    assert messages(mailbox) == []


def test_ses_sends_land_in_the_outbox_and_unverified_senders_are_still_refused(mailbox: Path) -> None:
    # Given SES with one verified sender
    ses = boto3.client("ses", region_name=REGION)
    ses.verify_email_identity(EmailAddress="billing@metered.example")

    # When it sends a plain and a raw email, and an unverified sender tries
    ses.send_email(
        Source="billing@metered.example",
        Destination={"ToAddresses": ["dev@acme.example"], "CcAddresses": ["cfo@acme.example"]},
        Message={"Subject": {"Data": "Your new tier"}, "Body": {"Text": {"Data": "You are on pro now."}}},
    )
    raw = "From: billing@metered.example\nTo: dev@acme.example\nSubject: Raw hello\n\nRaw body\n"
    ses.send_raw_email(Source="billing@metered.example", RawMessage={"Data": raw})
    with pytest.raises(ses.exceptions.MessageRejected):
        ses.send_email(
            Source="someone@else.example",
            Destination={"ToAddresses": ["dev@acme.example"]},
            Message={"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}},
        )

    # Then the two accepted messages are in the outbox, readable
    plain, raw_message = messages(mailbox)
    assert (plain["From"], plain["To"], plain["Subject"]) == (
        "billing@metered.example",
        "dev@acme.example, cfo@acme.example",
        "Your new tier",
    )
    assert text(plain).strip() == "You are on pro now."
    assert (raw_message["Subject"], raw_message.get_payload().strip()) == ("Raw hello", "Raw body")


def test_uninstall_gives_moto_its_methods_back(tmp_path: Path) -> None:
    # Given an outbox installed and then removed
    outbox.install(outbox.Outbox(tmp_path))
    outbox.uninstall()

    # When an email subscriber's topic is published to
    with mock_aws():
        sns, arn = topic_with("email", "ops@example.com")
        sns.publish(TopicArn=arn, Message="nobody hears this")

    # Then nothing is written
    assert list(tmp_path.glob("*.eml")) == []
