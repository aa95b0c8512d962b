"""A message as people read it, sent by email (SES) or to the operators' topic (SNS): subject, text body, and
attributes subscribers can filter on. Signup's confirmation link and the quota alerts are both written as one."""

from dataclasses import dataclass

# Message attributes subscribers can filter on: str -> String, int -> Number, list -> String.Array.
AttributeValue = str | int | list[str]


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    attributes: dict[str, AttributeValue]
