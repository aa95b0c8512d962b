"""SES adapter: email to one partner at a time from the deployment's verified sender (the EmailSender port).

SES, not SNS, because a per-partner address does not fit SNS: subscription filter policies are capped per
account, and every subscriber must confirm. SES sends to any address once the sender is verified (and, out
of the sandbox, without verifying recipients).
"""

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from core.aws import ses_client
from core.errors import EmailRejected

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

    from core.messages import Message

# SES errors that the same message would get again: retrying cannot help (throttling is botocore's job).
_PERMANENT = {
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "ConfigurationSetDoesNotExistException",
    "AccountSendingPausedException",
    "InvalidParameterValue",
}


class SesEmail:
    def __init__(self, sender: str, client: "SESClient | None" = None) -> None:
        self._sender = sender
        self._client = client or ses_client()

    def send(self, to: str, message: "Message") -> str:
        """Send a plain-text message; the SES message id. EmailRejected if SES refuses it for good."""
        try:
            sent = self._client.send_email(
                Source=self._sender,
                Destination={"ToAddresses": [to]},
                Message={
                    "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": message.body, "Charset": "UTF-8"}},
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in _PERMANENT:
                raise EmailRejected(f"SES refused the message: {error.get('Code')}: {error.get('Message')}") from exc
            raise
        return sent["MessageId"]
