"""What the operators' topic (AlertTopic) delivered, read through an SQS queue subscribed to it."""

import json
from typing import Any

import boto3


def operator_messages(queue_url: str) -> list[dict[str, Any]]:
    messages = []
    sqs = boto3.client("sqs")
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            envelope = json.loads(message["Body"])
            # Tier changes are text (an email); parked events and operator actions are JSON. Attributes are
            # what filters see.
            attributes = {name: value["Value"] for name, value in envelope.get("MessageAttributes", {}).items()}
            text = envelope["Message"]
            fields = json.loads(text) if text.startswith("{") else {"body": text}
            messages.append({"subject": envelope.get("Subject"), **attributes, **fields})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages
