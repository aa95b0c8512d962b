"""SNS adapter: messages to the operators' topic (AlertTopic)."""

import json
from typing import TYPE_CHECKING, Any

from core.aws import sns_client

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

    from core.messages import AttributeValue, Message

# SNS refuses a Subject longer than 100 characters (and email clients show only the start of it).
MAX_SUBJECT_LENGTH = 100


class OperatorTopic:
    """The Notifier port on one SNS topic: a subject, a text or JSON body, and string attributes to filter on."""

    def __init__(self, topic_arn: str, client: "SNSClient | None" = None) -> None:
        self._topic_arn = topic_arn
        self._client = client or sns_client()

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str:
        """Publish one message (text as is, a dict as JSON); the message id. Subscriptions may filter on
        `attributes`."""
        published = self._client.publish(
            TopicArn=self._topic_arn,
            Subject=subject[:MAX_SUBJECT_LENGTH],
            Message=message if isinstance(message, str) else json.dumps(message, sort_keys=True),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in (attributes or {}).items()
            },
        )
        return published["MessageId"]


class AlertTopic:
    """The AlertPublisher port on the operators' topic: readable text (what email subscribers get) and typed
    attributes to filter on (str: String, int: Number, list: String.Array)."""

    def __init__(self, topic_arn: str, client: "SNSClient | None" = None) -> None:
        self._topic_arn = topic_arn
        self._client = client or sns_client()

    def publish_message(self, message: "Message") -> str:
        published = self._client.publish(
            TopicArn=self._topic_arn,
            Subject=message.subject[:MAX_SUBJECT_LENGTH],
            Message=message.body,
            MessageAttributes={name: _attribute(value) for name, value in message.attributes.items()},
        )
        return published["MessageId"]


def _attribute(value: "AttributeValue") -> "MessageAttributeValueTypeDef":
    if isinstance(value, list):
        return {"DataType": "String.Array", "StringValue": json.dumps(value)}
    if isinstance(value, int):
        return {"DataType": "Number", "StringValue": str(value)}
    return {"DataType": "String", "StringValue": value}
