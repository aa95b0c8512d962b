"""SNS adapter: messages to the operators' topic (AlertTopic), the one adapter of that topic. The billing webhook
publishes a subject and a text or JSON body with string attributes (the Notifier port); the quota monitor a
readable Message with typed attributes (the AlertPublisher port). Both end in the same Publish call."""

import json
from typing import TYPE_CHECKING, Any

from core.aws import sns_client
from core.messages import AttributeValue, Message

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

# SNS refuses a Subject longer than 100 characters (and email clients show only the start of it).
MAX_SUBJECT_LENGTH = 100


class AlertTopic:
    """The operators' topic: a subject, a text body, and attributes subscriptions filter on (str: String,
    int: Number, list: String.Array)."""

    def __init__(self, topic_arn: str, client: "SNSClient | None" = None) -> None:
        self._topic_arn = topic_arn
        self._client = client or sns_client()

    def publish(self, subject: str, message: dict[str, Any] | str, attributes: dict[str, str] | None = None) -> str:
        """Publish one message (text as is, a dict as JSON); the message id."""
        body = message if isinstance(message, str) else json.dumps(message, sort_keys=True)
        return self.publish_message(Message(subject=subject, body=body, attributes=dict(attributes or {})))

    def publish_message(self, message: Message) -> str:
        published = self._client.publish(
            TopicArn=self._topic_arn,
            Subject=message.subject[:MAX_SUBJECT_LENGTH],
            Message=message.body,
            MessageAttributes={name: _attribute(value) for name, value in message.attributes.items()},
        )
        return published["MessageId"]


def _attribute(value: AttributeValue) -> "MessageAttributeValueTypeDef":
    if isinstance(value, list):
        return {"DataType": "String.Array", "StringValue": json.dumps(value)}
    if isinstance(value, int):
        return {"DataType": "Number", "StringValue": str(value)}
    return {"DataType": "String", "StringValue": value}
