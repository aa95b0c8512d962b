"""Quota alerts end to end on the offline stack: partners sign up over HTTP, their requests pass the local
API Gateway past 50, 80 and 100 percent of a small quota, the monitor runs the way `make invoke` and the
scheduler run it, and the outbox holds exactly one email per crossed threshold per key."""

import email
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PROJECT_ROOT, RunningStack, http, start_offline

pytestmark = pytest.mark.e2e

OPS = "ops@example.com"
SENDER = "alerts@example.com"
# A free quota of 10 a day, a throttle out of the way; no schedules: the test decides when the monitor runs.
PARAMS = (
    f"FreeQuotaLimit=10 FreeQuotaPeriod=DAY FreeRateLimit=100 FreeBurstLimit=100 "
    f"AlertEmail={OPS} PartnerAlertSender={SENDER}"
)
# The account's clock is moved to fixed instants, so the test never straddles a real midnight.
DAY_ONE = "2031-03-11T09:00:00+00:00"
DAY_TWO = "2031-03-12T09:00:00+00:00"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_offline(tmp_path_factory.mktemp("quota") / "state", PARAMS, "--no-schedules")
    yield running
    running.stop()


def control(stack: RunningStack, path: str, body: Any = None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the stack's own control endpoint on 127.0.0.1
        f"{stack.info['control_url']}/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


def run_monitor(stack: RunningStack) -> dict[str, Any]:
    """What the scheduler does: invoke the function with its schedule's input (scheduled time filled in)."""
    answer = control(stack, "invoke/QuotaMonitorFunction")
    assert answer["ok"], answer
    return dict(answer["result"])


def sign_up(stack: RunningStack, name: str, alert_emails: bool) -> dict[str, Any]:
    body = {
        "name": name,
        "email": f"{name.lower()}-{uuid.uuid4().hex[:6]}@partner.example",
        "alert_emails": alert_emails,
    }
    answer = http("POST", stack.url("/signup"), body=body)
    assert answer.status == HTTPStatus.CREATED, answer
    if alert_emails:  # alert emails go only to an address that opened the link signup sent it
        [confirmation] = [mail for mail in mails(stack) if mail["To"] == body["email"]]
        link = re.search(r"http\S+/signup/confirm\?token=\S+", confirmation.get_payload(decode=True).decode())
        assert link is not None
        assert http("GET", link.group(0)).status == HTTPStatus.OK
    return {**answer.body, "email": body["email"]}


def call(stack: RunningStack, partner: dict[str, Any], times: int) -> None:
    for _ in range(times):
        answer = http("GET", stack.url("/v1/models"), headers={"x-api-key": partner["api_key"]})
        assert answer.status == HTTPStatus.OK, answer


def mails(stack: RunningStack) -> list[Message]:
    outbox = Path(stack.info["outbox_dir"])
    return [email.message_from_bytes(path.read_bytes()) for path in sorted(outbox.glob("*.eml"))]


def alerts(stack: RunningStack) -> list[tuple[str, str]]:
    """(recipient, subject) of every quota email, sorted."""
    return sorted(
        (str(mail["To"]), str(mail["Subject"]))
        for mail in mails(stack)
        if "Quota" in str(mail["Subject"]) or "quota" in str(mail["Subject"])
    )


def test_one_email_per_crossed_threshold_per_key_then_none_then_again_next_period(stack: RunningStack) -> None:
    control(stack, "clock", {"now": DAY_ONE})
    # Given two partners: Ada asked for alert emails at signup, Bob did not
    ada = sign_up(stack, "Ada", alert_emails=True)
    bob = sign_up(stack, "Bob", alert_emails=False)

    # When Ada passes 50% of her daily quota of 10 and the monitor runs (as `make invoke` runs it)
    call(stack, ada, 5)
    invoked = subprocess.run(  # noqa: S603 - our own module
        [
            sys.executable,
            "-m",
            "offline.invoke",
            "--function",
            "QuotaMonitorFunction",
            "--state-dir",
            str(stack.state_dir),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["as_of"].startswith("2031-03-11T09:")

    # Then operators and Ada each got one email for 50%
    assert alerts(stack) == sorted(
        [
            (OPS, "Quota 50% used: Ada (free)"),
            (ada["email"], "You have used 50% of your free plan's request quota"),
        ]
    )
    operator = next(mail for mail in mails(stack) if mail["To"] == OPS)
    assert operator["X-SNS-Attribute-tier"] == "free"
    assert operator["X-SNS-Attribute-threshold"] == "50"
    assert operator["X-SNS-Attribute-partner_id"] == ada["partner_id"]
    assert ada["api_key"] not in operator.get_payload()
    # And Ada's email reads as one: greeting, the figure of its subject, the reset, what to do; her 5 requests
    # of a few seconds are too little to claim when the quota runs out
    [ada_mail] = [mail for mail in mails(stack) if mail["To"] == ada["email"] and "quota" in str(mail["Subject"])]
    body = ada_mail.get_payload(decode=True).decode()
    for expected in ("Hello Ada,", "has used 50% of its request quota", "5 of 10 requests used (50%), 5 left"):
        assert expected in body
    assert "Requests run out:  too early to tell" in body
    assert "2031-03-12 00:00 UTC" in body and "HTTP 429" in body and "upgrade" in body
    assert ada["api_key"] not in body

    # When Ada passes 80% and Bob goes from nothing to his limit (the 11th call is refused), and the monitor
    # runs twice at once (a duplicated delivery, or two overlapping runs)
    call(stack, ada, 3)
    call(stack, bob, 10)
    refused = http("GET", stack.url("/v1/models"), headers={"x-api-key": bob["api_key"]})
    assert refused.status == HTTPStatus.TOO_MANY_REQUESTS
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: run_monitor(stack), range(2)))

    # Then one email for Ada's 80% to each of operators and Ada, and one for Bob's 100% (not 50, 80, 95)
    assert sum(report["alerts"] for report in reports) == 2
    assert alerts(stack) == sorted(
        [
            (OPS, "Quota 50% used: Ada (free)"),
            (OPS, "Quota 80% used: Ada (free)"),
            (OPS, "Quota 100% used: Bob (free)"),
            (ada["email"], "You have used 50% of your free plan's request quota"),
            (ada["email"], "You have used 80% of your free plan's request quota"),
        ]
    )

    # When the monitor runs again with nothing new
    before = alerts(stack)
    again = run_monitor(stack)

    # Then nothing is added
    assert again["alerts"] == 0
    assert alerts(stack) == before

    # When the next day (a new quota period) Ada passes 50% again
    control(stack, "clock", {"now": DAY_TWO})
    call(stack, ada, 6)
    next_day = run_monitor(stack)

    # Then the alerts are re-armed: the 50% threshold once more (she is at 60%), to operators and to Ada
    assert next_day["as_of"].startswith("2031-03-12T09:")
    assert alerts(stack) == sorted(
        [
            *before,
            (OPS, "Quota 60% used: Ada (free)"),
            (ada["email"], "You have used 60% of your free plan's request quota"),
        ]
    )
