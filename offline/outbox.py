"""Email that AWS would send, written to a local outbox folder as one readable .eml file per message.

moto records SNS publishes and SES sends but delivers no email. `install(outbox)` hooks moto in-process:
a publish to a topic with an `email` or `email-json` subscription, and every SES SendEmail,
SendTemplatedEmail and SendRawEmail (v1 and v2, which moto routes through v1) that moto accepts, lands
in the outbox. SES still refuses an unverified sender, as AWS does outside the sandbox's verified identities.
"""

import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from moto.ses.models import SESBackend
from moto.ses.template import parse_template
from moto.sns.models import Subscription

SNS_SENDER = "AWS Notifications <no-reply@sns.amazonaws.com>"
EMAIL_PROTOCOLS = ("email", "email-json")


@dataclass(frozen=True)
class Outbox:
    """A folder of .eml files, named so that `ls` lists them in the order they were sent."""

    directory: Path

    def deliver(
        self,
        *,
        to: list[str],
        subject: str,
        body: str,
        sender: str,
        source: str,
        headers: dict[str, str] | None = None,
    ) -> Path:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["X-Offline-Source"] = source
        for name, value in (headers or {}).items():
            message[name] = value
        message.set_content(body)
        return self._write(subject, message.as_bytes())

    def deliver_raw(self, raw: str | bytes, source: str, subject: str = "") -> Path:
        data = raw.encode() if isinstance(raw, str) else raw
        return self._write(subject or "raw", data)

    def _write(self, subject: str, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        slug = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")[:50] or "message"
        path = self.directory / f"{stamp}-{next(_sequence):04d}-{slug}.eml"
        path.write_bytes(data)
        return path


_sequence = itertools.count(1)
_current: list[Outbox] = []
_lock = threading.Lock()
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def install(outbox: Outbox) -> None:
    """Deliver to `outbox` from now on (replacing any outbox installed before)."""
    with _lock:
        _current[:] = [outbox]
        if _originals:
            return
        _patch(Subscription, "publish", _after_sns_publish)
        for name in ("send_email", "send_templated_email", "send_raw_email"):
            _patch(SESBackend, name, _after_ses_send(name))


def uninstall() -> None:
    """Stop delivering and give moto its own methods back."""
    with _lock:
        _current.clear()
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()


def _patch(owner: type, name: str, after: Callable[..., None]) -> None:
    original = getattr(owner, name)
    _originals[(owner, name)] = original

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        outbox = _current[0] if _current else None
        if outbox is not None:
            after(outbox, self, result, *args, **kwargs)
        return result

    setattr(owner, name, patched)


def _after_sns_publish(
    outbox: Outbox,
    subscription: Subscription,
    _result: None,
    message: str,
    message_id: str,
    *,
    subject: str | None = None,
    message_attributes: dict[str, Any] | None = None,
    message_structure: str | None = None,
    **_: Any,
) -> None:
    if subscription.protocol not in EMAIL_PROTOCOLS:
        return
    # A filter policy that rejects the message means moto returned early: the subscriber gets nothing.
    matcher = getattr(subscription, "_filter_policy_matcher", None)
    if matcher is not None and not matcher.matches(message_attributes, message):
        return
    if message_structure == "json":
        # A JSON message structure carries one text per protocol, with "default" for the others.
        message = subscription._parse_message_structure(message, subscription.protocol)
    attributes = {name: str(value.get("Value", "")) for name, value in (message_attributes or {}).items()}
    if subscription.protocol == "email-json":
        body = json.dumps(subscription.get_post_data(message, message_id, subject, message_attributes), indent=2)
    else:
        listed = "".join(f"\n  {name}: {value}" for name, value in sorted(attributes.items()))
        body = message + (f"\n\n--\nMessage attributes:{listed}" if listed else "")
    outbox.deliver(
        to=[subscription.endpoint],
        # SNS's default subject for email when the publisher gives none.
        subject=subject or "AWS Notification Message",
        body=body,
        sender=SNS_SENDER,
        source="sns",
        headers={
            "X-SNS-Topic-Arn": subscription.topic.arn,
            "X-SNS-Message-Id": message_id,
            **{f"X-SNS-Attribute-{name}": value for name, value in sorted(attributes.items())},
        },
    )


def _after_ses_send(operation: str) -> Callable[..., None]:
    def deliver(outbox: Outbox, backend: SESBackend, result: Any, *args: Any, **kwargs: Any) -> None:
        message = result
        if operation == "send_raw_email":
            outbox.deliver_raw(message.raw_data, source="ses")
            return
        destinations = message.destinations or {}
        to = [
            address for kind in ("ToAddresses", "CcAddresses", "BccAddresses") for address in destinations.get(kind, [])
        ]
        if operation == "send_templated_email":
            subject, body = _render_template(backend, message.template, message.template_data)
        else:
            subject, body = message.subject, message.body
        outbox.deliver(
            to=to,
            subject=subject,
            body=str(body),
            sender=message.source,
            source="ses",
            headers={"X-SES-Message-Id": message.id},
        )

    return deliver


def _render_template(backend: SESBackend, name: str, data: str) -> tuple[str, str]:
    """Subject and text of a stored SES template, rendered with moto's own template engine."""
    template = backend.get_template(name)
    values = json.loads(data or "{}")
    subject = parse_template(str(template.get("subject_part") or ""), values)
    body = parse_template(str(template.get("text_part") or template.get("html_part") or ""), values)
    return subject, body
