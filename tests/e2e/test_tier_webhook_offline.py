"""The billing webhook on the offline stack, over real HTTP: sign up, upgrade by a signed webhook, and the
local gateway applies the new tier's throttle and quota to the same key at once; cancellation gives 403."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import pytest

from tests.e2e.conftest import PROJECT_ROOT, Answer, RunningStack, http, start_offline
from tests.webhook_events import body_of, generic_event, standard_headers, stripe_headers, stripe_subscription_event

pytestmark = pytest.mark.e2e

# Free: burst 2 (a third call at once is throttled), 5 a day. Pro: no throttle in the way, 8 a day. The
# webhook route's stage throttle is raised out of the way.
WEBHOOK_PARAMS = (
    "FreeRateLimit=1 FreeBurstLimit=2 FreeQuotaLimit=5 FreeQuotaPeriod=DAY "
    "ProRateLimit=100 ProBurstLimit=100 ProQuotaLimit=8 ProQuotaPeriod=DAY "
    "WebhookRateLimit=50 WebhookBurstLimit=50"
)


@pytest.fixture(scope="module")
def webhook_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("webhook") / "state", WEBHOOK_PARAMS)
    yield stack
    stack.stop()


def post_raw(url: str, body: str, headers: dict[str, str]) -> Answer:
    """A webhook delivery: the exact bytes that were signed."""
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return Answer(status, json.loads(raw), {})


def call_models(stack: RunningStack, api_key: str) -> int:
    return http("GET", stack.url("/v1/models"), headers={"x-api-key": api_key}).status


def test_the_stack_writes_signing_secrets_for_both_schemes(webhook_stack: RunningStack) -> None:
    secrets = webhook_stack.info["webhook_secrets"]

    assert set(secrets) == {"stripe", "standard"}
    assert all(value.startswith("whsec_") for value in secrets.values())
    assert any(
        route["path"] == "/webhooks/billing" and not route["api_key_required"] for route in webhook_stack.info["routes"]
    )


def test_an_upgrade_by_webhook_applies_the_new_plan_to_the_same_key_at_once(webhook_stack: RunningStack) -> None:
    # Given a partner signed up over HTTP on free (burst 2): a third call at once is throttled
    signed_up = http(
        "POST", webhook_stack.url("/signup"), body={"name": "Ada", "email": f"ada-{uuid.uuid4().hex[:8]}@example.com"}
    )
    assert signed_up.status == HTTPStatus.CREATED
    api_key, partner_id = signed_up.body["api_key"], signed_up.body["partner_id"]
    # (at once: one after the other, a loaded machine may take long enough per call for the bucket to refill)
    with ThreadPoolExecutor(max_workers=3) as pool:
        burst = sorted(pool.map(lambda _: call_models(webhook_stack, api_key), range(3)))
    assert burst == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]

    # When the billing system upgrades it to pro by a signed webhook
    body = body_of(generic_event(partner_id=partner_id, tier="pro"))
    headers = standard_headers(body, webhook_stack.info["webhook_secrets"]["standard"])
    answer = post_raw(webhook_stack.url("/webhooks/billing"), body, headers)
    assert (answer.status, answer.body["status"], answer.body["tier"]) == (HTTPStatus.OK, "applied", "pro")

    # Then the same key gets pro's throttle at once (no 429 in a burst), and pro's quota of 8 less the 2 calls
    # already made today: 6 more calls, then Limit Exceeded
    statuses = [call_models(webhook_stack, api_key) for _ in range(7)]
    assert statuses == [HTTPStatus.OK] * 6 + [HTTPStatus.TOO_MANY_REQUESTS]
    exceeded = http("GET", webhook_stack.url("/v1/models"), headers={"x-api-key": api_key})
    assert exceeded.body["message"] == "Limit Exceeded"


def test_a_cancelled_partners_key_gets_403_and_a_new_subscription_restores_it(webhook_stack: RunningStack) -> None:
    # Given a partner with a working key
    signed_up = http(
        "POST", webhook_stack.url("/signup"), body={"name": "Bob", "email": f"bob-{uuid.uuid4().hex[:8]}@example.com"}
    )
    api_key, partner_id = signed_up.body["api_key"], signed_up.body["partner_id"]
    assert call_models(webhook_stack, api_key) == HTTPStatus.OK
    secret = webhook_stack.info["webhook_secrets"]["stripe"]

    # When Stripe says the subscription was deleted
    cancel = body_of(
        stripe_subscription_event(
            partner_id=partner_id,
            event_type="customer.subscription.deleted",
            status="canceled",
            created=int(time.time()) - 10,
        )
    )
    answer = post_raw(webhook_stack.url("/webhooks/billing"), cancel, stripe_headers(cancel, secret))

    # Then the key is refused by the gateway itself
    assert (answer.status, answer.body["partner_status"]) == (HTTPStatus.OK, "DISABLED")
    forbidden = http("GET", webhook_stack.url("/v1/models"), headers={"x-api-key": api_key})
    assert (forbidden.status, forbidden.body["message"]) == (HTTPStatus.FORBIDDEN, "Forbidden")

    # When a new subscription starts, the same key works again
    again = body_of(stripe_subscription_event(partner_id=partner_id, event_type="customer.subscription.created"))
    assert (
        post_raw(webhook_stack.url("/webhooks/billing"), again, stripe_headers(again, secret)).status == HTTPStatus.OK
    )
    assert call_models(webhook_stack, api_key) == HTTPStatus.OK


def test_an_unsigned_delivery_over_http_is_refused(webhook_stack: RunningStack) -> None:
    answer = http("POST", webhook_stack.url("/webhooks/billing"), body=generic_event(partner_id="p_x"))

    assert answer.status == HTTPStatus.UNAUTHORIZED
    assert answer.body["error"]["code"] == "invalid_signature"


def test_the_readme_command_sends_a_signed_test_event(webhook_stack: RunningStack) -> None:
    # Given a partner
    signed_up = http(
        "POST", webhook_stack.url("/signup"), body={"name": "Cy", "email": f"cy-{uuid.uuid4().hex[:8]}@example.com"}
    )
    partner_id = signed_up.body["partner_id"]

    # When the README's command sends an upgrade, with each scheme
    results = [
        subprocess.run(  # noqa: S603 - our own module, our own arguments
            [sys.executable, "-m", "offline.billing_event", "--partner-id", partner_id, "--tier", tier, *scheme,
             "--state-dir", str(webhook_stack.state_dir)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        # Stripe's `created` has one-second resolution, Standard Webhooks' timestamp microseconds: the Stripe
        # event goes first, so the second event is newer even when both are sent within the same second.
        for tier, scheme in (("pro", ["--scheme", "stripe"]), ("enterprise", []))
    ]  # fmt: skip

    # Then both are applied
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("200 ")
        assert '"status": "applied"' in result.stdout
