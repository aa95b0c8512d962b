"""Lost-key recovery in a real headless Chromium: a partner signs up, loses the key, asks for a link, opens the
link from the offline outbox, presses the button, gets a new key shown once; the old key is then refused."""

import email
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PortalPage, _portal_page
from tests.e2e.conftest import RunningStack, http, start_offline

pytestmark = pytest.mark.browser

# A sender, so the deployment can email recovery links (offline the identity is verified at once).
RECOVERY_PARAMS = "PartnerAlertSender=alerts@example.com FreeRateLimit=20 FreeBurstLimit=40"


@pytest.fixture(scope="module")
def recovery_stack(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("recovery") / "state", RECOVERY_PARAMS)
    yield stack
    stack.stop()


@pytest.fixture
def portal(chromium: Any, recovery_stack: RunningStack) -> Iterator[PortalPage]:
    yield from _portal_page(chromium, recovery_stack, viewport={"width": 1280, "height": 900})


def recovery_link(stack: RunningStack, to: str) -> str:
    outbox = Path(stack.info["outbox_dir"])
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == to and "recovery" in str(message["Subject"]).lower():
            body = message.get_payload(decode=True)
            assert isinstance(body, bytes)
            return next(line for line in body.decode().splitlines() if "#recover=" in line).strip()
    raise AssertionError(f"no recovery email to {to}")


def models(stack: RunningStack, key: str) -> int:
    return http("GET", stack.url("/v1/models"), headers={"Authorization": f"Bearer {key}"}).status


def test_recover_a_lost_key_from_the_emailed_link(portal: PortalPage) -> None:
    # Given a partner who signed up in the page (and then lost the key)
    address = f"lost-{uuid.uuid4().hex[:8]}@example.com"
    portal.open()
    old_key = portal.sign_up("Ada Lovelace", address)
    assert models(portal.stack, old_key) == HTTPStatus.OK

    # When it asks for a link with its email
    portal.open("#recover")
    portal.page.fill("#recover-email", address)
    portal.screenshot("9-recover-form")
    portal.page.click("#recover-submit")
    portal.page.wait_for_selector("#recover-status:not([hidden])")
    assert "If a partner is registered" in portal.page.text_content("#recover-status")
    portal.screenshot("10-recover-link-sent")

    # And opens the emailed link: nothing is issued until the button is pressed
    link = recovery_link(portal.stack, address)
    portal.page.goto(link)
    portal.page.wait_for_selector("#recover-confirm:not([hidden])")
    assert "#recover=" not in portal.page.url  # the token left the address bar
    assert models(portal.stack, old_key) == HTTPStatus.OK
    portal.screenshot("11-recover-confirm")
    portal.page.click("#recover-key-submit")
    portal.page.wait_for_selector("#recover-result:not([hidden])")
    new_key = portal.page.input_value("#recovered-key")
    portal.screenshot("12-recover-key-shown")

    # Then the new key works and the old one is refused
    assert new_key and new_key != old_key
    assert models(portal.stack, new_key) == HTTPStatus.OK
    assert models(portal.stack, old_key) == HTTPStatus.FORBIDDEN

    # And the link works once
    portal.page.goto(link)
    portal.page.wait_for_selector("#recover-confirm:not([hidden])")
    portal.page.click("#recover-key-submit")
    portal.page.wait_for_selector("#recover-error:not([hidden])")
    assert "already used or expired" in portal.page.text_content("#recover-error")


def test_an_unknown_address_gets_the_same_answer_in_the_page(portal: PortalPage) -> None:
    portal.open("#recover")
    portal.page.fill("#recover-email", f"nobody-{uuid.uuid4().hex[:8]}@example.com")
    portal.page.click("#recover-submit")
    portal.page.wait_for_selector("#recover-status:not([hidden])")
    assert "If a partner is registered" in portal.page.text_content("#recover-status")


def test_the_portal_with_a_trailing_slash_opens_the_portal(portal: PortalPage) -> None:
    portal.page.goto(portal.stack.url("/portal/"))
    portal.page.wait_for_selector("#tier-options input[type=radio]", state="attached")
    assert portal.page.url.endswith("/portal")
