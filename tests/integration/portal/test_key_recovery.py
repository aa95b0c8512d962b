"""Lost-key recovery in-process on the emulated stack, with PortalFunction's environment: the same answer for a
registered address and any other, a link in the outbox that works once and for 15 minutes only, the lost key
deleted at once and the new one shown once, limits per email and per source, and hostile input refused."""

import copy
import email
import json
import os
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from http import HTTPStatus
from pathlib import Path
from typing import Any

import boto3
import pytest

from core.adapters.audit_trail import AuditTrail
from core.portal import recovery
from core.settings import forget_settings
from core.signup.models import SignupRequest
from core.signup.service import signup_service
from handlers import portal as portal_handler
from offline import outbox
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.faults import fails_once
from tests.lambda_events import LambdaContext, sample_event

SENDER = "alerts@example.com"


@pytest.fixture
def mailbox(
    signup_env: None, stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """PortalFunction's environment on the emulated stack, a verified sender, email landing in an outbox; no
    answer floor (each test that measures it sets one)."""
    variables = template.resources["PortalFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    monkeypatch.setenv("PARTNER_ALERT_SENDER", SENDER)
    monkeypatch.setenv("RECOVERY_ANSWER_FLOOR_SECONDS", "0")
    forget_settings()
    recovery.key_recovery.cache_clear()
    outbox.install(outbox.Outbox(tmp_path))
    try:
        yield tmp_path
    finally:
        outbox.uninstall()
        recovery.key_recovery.cache_clear()
        forget_settings()


pytestmark = pytest.mark.usefixtures("mailbox")


def post(path: str, body: Any, source_ip: str = "203.0.113.24", base64_body: bool = False) -> tuple[int, Any]:
    event = copy.deepcopy(sample_event("portal.json"))
    raw = body if isinstance(body, str) else json.dumps(body)
    event.update(
        path=path, resource=path, httpMethod="POST", body=raw, isBase64Encoded=base64_body, pathParameters=None
    )
    event["requestContext"].update(resourcePath=path, path=f"/live{path}", httpMethod="POST")
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    result = portal_handler.handler(event, LambdaContext(function_name="PortalFunction"))
    return result["statusCode"], json.loads(result["body"])


def mails(folder: Path) -> list[Message]:
    return [email.message_from_bytes(path.read_bytes()) for path in sorted(folder.glob("*.eml"))]


def token_in(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    return text.split("#recover=", 1)[1].split()[0]


def partner(status: str | None = None) -> dict[str, Any]:
    address = f"{uuid.uuid4().hex[:10]}@acme.example"
    signed = signup_service().sign_up(SignupRequest(name="Ada", email=address))
    if status:
        boto3.client("dynamodb").update_item(
            TableName=os.environ["PARTNERS_TABLE"],
            Key={"pk": {"S": f"PARTNER#{signed.partner_id}"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
    return {"email": address, "partner_id": signed.partner_id, "api_key_id": signed.api_key_id}


def key_exists(key_id: str) -> bool:
    try:
        boto3.client("apigateway").get_api_key(apiKey=key_id)
    except boto3.client("apigateway").exceptions.NotFoundException:
        return False
    return True


def test_a_registered_address_gets_a_link_that_issues_a_new_key_once(mailbox: Path) -> None:
    found = partner()

    status, _ = post("/portal/recover", {"email": found["email"].upper()})

    assert status == HTTPStatus.ACCEPTED
    [message] = mails(mailbox)
    assert message["To"] == found["email"] and message["From"] == SENDER
    token = token_in(message)
    # Only the token's hash is stored
    items = boto3.client("dynamodb").scan(TableName=os.environ["PARTNERS_TABLE"])["Items"]
    assert token not in json.dumps(items)

    status, key = post("/portal/recover/key", {"token": token})
    assert status == HTTPStatus.OK, key
    assert key["partner_id"] == found["partner_id"] and key["api_key"]
    assert not key_exists(found["api_key_id"]) and key_exists(key["api_key_id"])

    # The link works once
    assert post("/portal/recover/key", {"token": token}) == (
        HTTPStatus.NOT_FOUND,
        {
            "error": {
                "code": "recovery_link_invalid",
                "message": "this recovery link is unknown, already used or expired; ask for a new one",
            }
        },
    )


@pytest.mark.parametrize("status", [None, "SUSPENDED", "DISABLED"])
def test_the_answer_is_the_same_for_any_address_and_only_a_recoverable_partner_gets_mail(
    mailbox: Path, status: str | None
) -> None:
    registered = post("/portal/recover", {"email": partner("SUSPENDED" if status else None)["email"]})
    if status:
        registered = post("/portal/recover", {"email": partner(status)["email"]})
    unknown = post("/portal/recover", {"email": f"nobody-{uuid.uuid4().hex[:6]}@acme.example"})

    assert registered == unknown
    assert len(mails(mailbox)) == (0 if status else 1)


def test_revoked_and_dormant_partners_can_recover(mailbox: Path) -> None:
    for status in ("REVOKED", "DORMANT"):
        found = partner(status)
        post("/portal/recover", {"email": found["email"]})
    tokens = [token_in(message) for message in mails(mailbox)]
    assert len(tokens) == 2
    for token in tokens:
        status, key = post("/portal/recover/key", {"token": token})
        assert status == HTTPStatus.OK, key


def test_the_answer_takes_as_long_whether_or_not_the_address_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERY_ANSWER_FLOOR_SECONDS", "0.5")
    forget_settings()
    recovery.key_recovery.cache_clear()
    found = partner()
    timings = []
    for address in (found["email"], f"nobody-{uuid.uuid4().hex[:6]}@acme.example"):
        started = time.monotonic()
        post("/portal/recover", {"email": address})
        timings.append(time.monotonic() - started)
    assert all(0.5 <= took < 1.0 for took in timings), timings


def test_an_expired_link_is_refused(mailbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = partner()
    post("/portal/recover", {"email": found["email"]})
    [message] = mails(mailbox)
    later = time.time() + 15 * 60 + 1
    monkeypatch.setattr(recovery.key_recovery(), "_clock", lambda: later)

    status, body = post("/portal/recover/key", {"token": token_in(message)})

    assert (status, body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "recovery_link_invalid")
    assert key_exists(found["api_key_id"])


def test_requests_are_limited_per_email_silently_and_per_source_with_429(mailbox: Path) -> None:
    found = partner()
    answers = [post("/portal/recover", {"email": found["email"]}, source_ip=f"198.51.100.{n}") for n in range(5)]
    assert len({json.dumps(answer) for answer in answers}) == 1  # the same 202 every time
    assert len(mails(mailbox)) == 3  # per email: 3 an hour

    source = "192.0.2.77"
    statuses = [post("/portal/recover", {"email": f"x{n}@acme.example"}, source_ip=source)[0] for n in range(11)]
    assert statuses == [HTTPStatus.ACCEPTED] * 10 + [HTTPStatus.TOO_MANY_REQUESTS]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/portal/recover", {}),
        ("/portal/recover", {"email": "not an address"}),
        ("/portal/recover", {"email": "a@b.example\r\nBcc: x@y.example"}),
        ("/portal/recover", {"email": "a" * 300 + "@b.example"}),
        ("/portal/recover", {"email": "a@b.example", "extra": 1}),
        ("/portal/recover", "not json"),
        ("/portal/recover", "x" * 5000),
        ("/portal/recover/key", {"token": "short"}),
        ("/portal/recover/key", {"token": "../../etc/passwd-is-long-enough"}),
        ("/portal/recover/key", {"token": 12345678901234567890}),
        ("/portal/recover/key", []),
    ],
)
def test_hostile_input_gets_a_4xx(mailbox: Path, path: str, body: Any) -> None:
    status, answer = post(path, body)
    assert HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR, answer
    assert mails(mailbox) == []


def test_a_body_that_is_not_utf8_is_a_400() -> None:
    assert post("/portal/recover", "/w==", base64_body=True)[0] == HTTPStatus.BAD_REQUEST


def test_an_unknown_token_is_refused() -> None:
    status, body = post("/portal/recover/key", {"token": "A" * 43})
    assert (status, body["error"]["code"]) == (HTTPStatus.NOT_FOUND, "recovery_link_invalid")


def test_a_partner_of_one_key_per_mailbox_recovers_by_any_address_of_its_mailbox(
    mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a partner signed up with OneKeyPerMailbox (its lock is the Gmail mailbox, not the address as written)
    monkeypatch.setenv("ONE_KEY_PER_MAILBOX", "true")
    forget_settings()
    signup_service.cache_clear()
    local = uuid.uuid4().hex[:8]
    signup_service().sign_up(SignupRequest(name="Ada", email=f"{local[:4]}.{local[4:]}+work@gmail.com"))

    # When it asks with another spelling of the same mailbox
    status, _ = post("/portal/recover", {"email": f"{local}@googlemail.com"})

    # Then the link goes to the address it registered
    assert status == HTTPStatus.ACCEPTED
    [message] = mails(mailbox)
    assert message["To"] == f"{local[:4]}.{local[4:]}+work@gmail.com"


def test_a_recovery_is_in_the_partners_audit_trail_without_the_key(mailbox: Path) -> None:
    # Given a partner who recovered a key from the emailed link
    found = partner()
    post("/portal/recover", {"email": found["email"]})
    status, key = post("/portal/recover/key", {"token": token_in(mails(mailbox)[0])})
    assert status == HTTPStatus.OK, key

    # When an operator reads the partner's audit trail (the console's AUDIT# items)
    [entry] = AuditTrail(os.environ["PARTNERS_TABLE"]).trail(found["partner_id"], 10)

    # Then the re-issue is there, applied, by the partner through the portal, naming both keys but no value
    assert (entry.action, entry.outcome, entry.actor) == ("recover-key", "applied", "partner:portal-key-recovery")
    assert entry.details["new_key_id"] == key["api_key_id"]
    assert entry.details["retired_key_id"] == found["api_key_id"]
    assert key["api_key"] not in entry.model_dump_json()


def test_a_failing_audit_write_never_costs_the_partner_its_new_key(
    mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the audit trail's write failing (DynamoDB throttled) when a partner opens its link
    found = partner()
    post("/portal/recover", {"email": found["email"]})

    def throttled(*_: Any) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(AuditTrail, "begin", throttled)
    status, key = post("/portal/recover/key", {"token": token_in(mails(mailbox)[0])})

    # Then the new key is still shown (the only time it can be) and works; the lost one is gone
    assert status == HTTPStatus.OK, key
    assert key_exists(key["api_key_id"]) and not key_exists(found["api_key_id"])


@pytest.mark.parametrize(
    ("service", "operation", "code", "status"),
    [
        ("api-gateway", "CreateApiKey", "TooManyRequestsException", 429),
        ("api-gateway", "CreateUsagePlanKey", "BadRequestException", 400),
        ("dynamodb", "TransactWriteItems", "InternalServerError", 500),
    ],
)
def test_a_re_issue_that_fails_leaves_the_link_usable_and_the_old_key_working(
    mailbox: Path, service: str, operation: str, code: str, status: int
) -> None:
    # Given a partner's recovery link, and the rotation's AWS call failing once when the partner opens it
    found = partner()
    post("/portal/recover", {"email": found["email"]})
    token = token_in(mails(mailbox)[0])
    recovery.key_recovery.cache_clear()  # clients made inside the block take its hook

    with fails_once(service, operation, code, status) as failed:
        first_status, first = post("/portal/recover/key", {"token": token})

    # Then that attempt failed with nothing changed: the old key is still the partner's and works
    assert failed() == 1 and first_status >= HTTPStatus.INTERNAL_SERVER_ERROR, first
    assert key_exists(found["api_key_id"])
    # And the same link still works once (the partner is not left to ask again): a new key, the old one gone
    second_status, key = post("/portal/recover/key", {"token": token})
    assert second_status == HTTPStatus.OK, key
    assert key_exists(key["api_key_id"]) and not key_exists(found["api_key_id"])
    assert post("/portal/recover/key", {"token": token})[0] == HTTPStatus.NOT_FOUND
