"""Alert emails go only to an address that confirmed a link, and the one-key-per-mailbox option."""

import email
import json
import re
from collections.abc import Iterator
from email.message import Message
from http import HTTPStatus
from pathlib import Path
from typing import Any

import boto3
import pytest

from core.adapters.partners_table import PartnerRecords
from core.settings import forget_settings
from core.signup.service import mailbox_of, signup_service
from handlers import signup
from offline import outbox
from offline.provision import ProvisionedStack
from tests.lambda_events import LambdaContext, sample_event, signup_event

SENDER = "alerts@example.com"


@pytest.fixture
def mailbox(
    stack: ProvisionedStack, signup_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """Signup with a verified alert sender, its emails landing in an outbox."""
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    monkeypatch.setenv("PARTNER_ALERT_SENDER", SENDER)
    forget_settings()
    signup_service.cache_clear()
    outbox.install(outbox.Outbox(tmp_path))
    try:
        yield tmp_path
    finally:
        outbox.uninstall()


def mails(folder: Path) -> list[Message]:
    return [email.message_from_bytes(path.read_bytes()) for path in sorted(folder.glob("*.eml"))]


def call(body: Any) -> tuple[int, dict[str, Any]]:
    response = signup.handler(signup_event(body), LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def open_link(url: str) -> tuple[int, dict[str, Any]]:
    event = sample_event("signup.json")
    event.update(httpMethod="GET", path="/signup/confirm", resource="/signup/confirm", body=None, isBase64Encoded=False)
    token = url.partition("?token=")[2]
    event["queryStringParameters"] = {"token": token}
    event["multiValueQueryStringParameters"] = {"token": [token]}
    event["requestContext"].update(httpMethod="GET", resourcePath="/signup/confirm", path="/live/signup/confirm")
    response = signup.handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def partner_record(stack: ProvisionedStack, partner_id: str) -> Any:
    return PartnerRecords(stack.physical_ids["PartnersTable"]).get(partner_id)


def test_alert_emails_wait_for_the_address_to_confirm_a_single_use_link(stack: ProvisionedStack, mailbox: Path) -> None:
    # Given a partner who asks for alert emails at signup
    status, body = call({"name": "Acme", "email": "dev@acme.example", "alert_emails": True})

    # Then the answer says a link was sent, and the partner is not yet one the quota monitor emails
    assert status == HTTPStatus.CREATED
    assert body["email_confirmation"] == "sent"
    partner = partner_record(stack, body["partner_id"])
    assert partner.alert_emails and not partner.email_confirmed and not partner.wants_alert_emails
    # And the address got one email with the link (the API's own host and stage), from the alert sender
    [mail] = mails(mailbox)
    assert mail["To"] == "dev@acme.example" and SENDER in mail["From"]
    link = re.search(r"https://\S+/live/signup/confirm\?token=\S+", mail.get_payload(decode=True).decode())
    assert link is not None
    # And only the token's hash is stored
    token = link.group(0).partition("?token=")[2]
    table = boto3.client("dynamodb").scan(TableName=stack.physical_ids["PartnersTable"])["Items"]
    assert token not in json.dumps(table)

    # When the link is opened
    status, answer = open_link(link.group(0))

    # Then the address is confirmed, and the partner gets alert emails from now on
    assert status == HTTPStatus.OK
    assert answer["partner_id"] == body["partner_id"]
    assert partner_record(stack, body["partner_id"]).wants_alert_emails
    # And the link works once
    status, again = open_link(link.group(0))
    assert status == HTTPStatus.NOT_FOUND
    assert again["error"]["code"] == "confirmation_link_invalid"


def test_no_link_is_sent_to_a_partner_who_did_not_ask(stack: ProvisionedStack, mailbox: Path) -> None:
    status, body = call({"name": "Acme", "email": "dev@acme.example"})

    assert status == HTTPStatus.CREATED
    assert "email_confirmation" not in body
    assert mails(mailbox) == []


@pytest.mark.parametrize("token", ["", "short", "x" * 43 + "'", "A" * 43])
def test_a_bad_or_unknown_token_is_a_4xx(stack: ProvisionedStack, mailbox: Path, token: str) -> None:
    status, answer = open_link(f"https://h/live/signup/confirm?token={token}")

    assert status in (HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND)
    assert answer["error"]["code"] in ("invalid_request", "confirmation_link_invalid")


def test_without_a_sender_no_link_goes_out_and_nobody_gets_alert_emails(
    stack: ProvisionedStack, signup_env: None
) -> None:
    status, body = call({"name": "Acme", "email": "dev@acme.example", "alert_emails": True})

    assert status == HTTPStatus.CREATED
    assert body["email_confirmation"] == "unavailable"
    assert not partner_record(stack, body["partner_id"]).wants_alert_emails


@pytest.mark.parametrize(
    ("address", "mailbox_address"),
    [
        ("a.b+x@gmail.com", "ab@gmail.com"),
        ("ab@googlemail.com", "ab@gmail.com"),
        ("a.b+x@acme.example", "a.b+x@acme.example"),  # other providers may treat dots and tags as distinct
    ],
)
def test_one_key_per_mailbox_reads_gmail_addresses_as_gmail_delivers_them(address: str, mailbox_address: str) -> None:
    assert mailbox_of(address, one_key_per_mailbox=True) == mailbox_address
    assert mailbox_of(address, one_key_per_mailbox=False) == address


def test_with_one_key_per_mailbox_a_gmail_alias_is_already_registered(
    stack: ProvisionedStack, signup_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the option is on, and ab@gmail.com signed up
    monkeypatch.setenv("ONE_KEY_PER_MAILBOX", "true")
    forget_settings()
    signup_service.cache_clear()
    status, first = call({"name": "Ab", "email": "ab@gmail.com"})
    assert status == HTTPStatus.CREATED

    # When the same mailbox signs up again through a dotted, tagged alias
    status, answer = call({"name": "Ab again", "email": "a.b+free2@googlemail.com"})

    # Then it is the same mailbox: no second key
    assert status == HTTPStatus.CONFLICT
    assert answer["error"]["code"] == "email_already_registered"
    # And the partner record keeps the address as given
    assert partner_record(stack, first["partner_id"]).email == "ab@gmail.com"


@pytest.fixture
def double_opt_in(mailbox: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOUBLE_OPT_IN", "true")
    forget_settings()
    signup_service.cache_clear()
    return mailbox


def link_in(mail: Message) -> str:
    found = re.search(r"https://\S+/signup/confirm\?token=\S+", mail.get_payload(decode=True).decode())
    assert found is not None
    return found.group(0)


def test_with_double_opt_in_the_key_is_issued_when_the_link_is_opened(
    stack: ProvisionedStack, double_opt_in: Path
) -> None:
    # Given double opt-in, a signup only sends a link: no key exists yet
    status, body = call({"name": "Acme", "email": "dev@acme.example", "alert_emails": True})
    assert status == HTTPStatus.ACCEPTED
    assert body["status"] == "confirmation_sent" and "api_key" not in body
    assert boto3.client("apigateway").get_api_keys()["items"] == []
    [mail] = mails(double_opt_in)
    assert mail["To"] == "dev@acme.example"

    # When the link is opened
    status, signed_up = open_link(link_in(mail))

    # Then the key is issued and shown this once, in its plan, and the address counts as confirmed
    assert status == HTTPStatus.CREATED
    assert signed_up["api_key"] and signed_up["tier"] == "free"
    partner = partner_record(stack, signed_up["partner_id"])
    assert partner.api_key_id == signed_up["api_key_id"] and partner.wants_alert_emails
    # And the link does not issue a second key
    status, _ = open_link(link_in(mail))
    assert status == HTTPStatus.NOT_FOUND
    assert len(boto3.client("apigateway").get_api_keys()["items"]) == 1


def test_with_double_opt_in_an_address_gets_one_link_however_often_it_is_posted(
    stack: ProvisionedStack, double_opt_in: Path
) -> None:
    # Given someone posts a third party's address again and again
    answers = [call({"name": "Spam", "email": "victim@example.org"}) for _ in range(3)]

    # Then every answer is the same 202, and the address gets one email
    assert {status for status, _ in answers} == {HTTPStatus.ACCEPTED}
    assert len(mails(double_opt_in)) == 1


def test_with_double_opt_in_a_registered_address_gets_no_email(stack: ProvisionedStack, double_opt_in: Path) -> None:
    status, _ = call({"name": "Acme", "email": "dev@acme.example"})
    assert status == HTTPStatus.ACCEPTED
    assert open_link(link_in(mails(double_opt_in)[0]))[0] == HTTPStatus.CREATED

    # When the registered address is posted again, the answer is the same and nothing is sent
    status, _ = call({"name": "Acme", "email": "dev@acme.example"})
    assert status == HTTPStatus.ACCEPTED
    assert len(mails(double_opt_in)) == 1
