"""The partner portal in headless Chromium against the offline stack: sign up in the page and use the key it
shows with the OpenAI SDK, watch usage change, hostile names shown as text, security headers, keyboard use,
a phone's screen. Each test also checks (its fixture) that the page requested nothing from any other host."""

import contextlib
import io
import re
import uuid
from http import HTTPStatus
from typing import Any

import pytest
from openai import OpenAI
from playwright.sync_api import expect

from tests.browser.conftest import PortalPage

pytestmark = pytest.mark.browser

XSS_NAME = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def sdk(portal: PortalPage, key: str) -> OpenAI:
    return OpenAI(base_url=portal.stack.url("/v1"), api_key=key, max_retries=0)


def test_sign_up_in_the_page_and_call_the_api_with_the_shown_key(portal: PortalPage) -> None:
    # Given the portal, listing this deployment's self-service tiers with their limits and models
    portal.open()
    tiers = portal.page.locator("#tier-options label").all_inner_texts()
    assert tiers == ["free", "pro"]
    assert "40 requests per day" in portal.page.inner_text("#tier-free-limits")
    assert "models: nova-micro" in portal.page.inner_text("#tier-free-limits")
    portal.screenshot("1-signup-form")

    # When a partner signs up on the free tier
    key = portal.sign_up("Acme AI", new_email("acme"))

    # Then the key is shown once, with a warning, the partner's facts and snippets for this deployment
    assert key
    assert "it will not be shown again" in portal.page.inner_text("#signup-result")
    assert portal.page.inner_text("#issued-tier") == "free"
    assert portal.page.inner_text("#issued-name") == "Acme AI"
    base_url = portal.stack.info["api_url"]
    curl = portal.page.inner_text("#snippet-curl")
    python = portal.page.inner_text("#snippet-python")
    assert f"API_URL='{base_url}'" in curl
    assert f'base_url="{base_url}/v1"' in python
    portal.screenshot("2-signup-key-shown")

    # And the key works with the OpenAI SDK, and the Python snippet runs as pasted
    reply = sdk(portal, key).chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(python, "snippet", "exec"), {})  # noqa: S102 - the page's own snippet, our own key
    assert printed.getvalue().strip()

    # And the copy button puts it on the clipboard
    portal.page.click("#copy-key")
    expect(portal.page.locator("#copy-status")).to_have_text("Copied.")
    assert portal.page.evaluate("navigator.clipboard.readText()") == key


def test_usage_shows_the_period_and_changes_after_calls(portal: PortalPage) -> None:
    # Given a partner who signed up in the page and went to its usage
    portal.open()
    key = portal.sign_up("Usage Co", new_email("usage"))
    portal.page.click("#go-usage")
    portal.page.wait_for_selector("#usage-result:not([hidden])")
    first = portal.page.inner_text("#usage-requests")
    assert first.startswith("1 of 40")
    assert portal.page.inner_text("#usage-tier") == "free"
    assert portal.page.inner_text("#usage-throttle") == (
        "20 requests per second, bursts of 40; chat completions 10 per second, bursts of 20"
    )

    # When it makes calls with the SDK and looks again
    client = sdk(portal, key)
    for _ in range(7):
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "Count me"}])
    portal.page.click("#usage-submit")
    # (waits by locator: the page's CSP refuses the eval a wait_for_function string needs)
    expect(portal.page.locator("#usage-requests")).not_to_have_text(re.compile(r"^1 of"))

    # Then the numbers, the chart and the projection follow: 7 completions and 2 looks
    assert portal.page.inner_text("#usage-requests").startswith("9 of 40 (31 left)")
    assert re.match(r"^[1-9][\d,]* of 100,000", portal.page.inner_text("#usage-tokens"))
    assert portal.page.locator("#usage-chart svg path.used").count() == 1
    assert "Requests used this day: 9 of 40" in portal.page.inner_text("#usage-chart-caption")
    assert portal.page.inner_text("#usage-projection")
    # the Upgrade buttons for the tiers on sale other than the partner's own
    links = portal.page.locator("#upgrade-links a")
    assert links.all_inner_texts() == ["Upgrade to pro", "Upgrade to enterprise"]
    assert links.first.get_attribute("href") == "https://billing.example/pro"
    portal.screenshot("3-usage")

    # And the key is kept in this tab's sessionStorage only: no cookie, no URL
    stored = portal.page.evaluate("window.sessionStorage.getItem('portal.apiKey')")
    assert stored == key
    assert portal.page.context.cookies() == []
    assert not [url for url in portal.requests if key in url]
    assert key not in portal.page.url

    # And forgetting it removes it
    portal.page.click("#usage-forget")
    assert portal.page.evaluate("window.sessionStorage.getItem('portal.apiKey')") is None


def test_a_wrong_key_is_told_plainly(portal: PortalPage) -> None:
    # When someone asks for usage with a key that does not exist
    portal.open("#usage")
    portal.page.fill("#usage-key", "not-a-real-key-0123456789")
    portal.page.click("#usage-submit")

    # Then the page says so
    portal.page.wait_for_selector("#usage-error:not([hidden])")
    assert "This key is not valid" in portal.page.inner_text("#usage-error")
    portal.screenshot("5-usage-wrong-key")


def test_a_hostile_name_is_shown_as_text_and_never_run(portal: PortalPage) -> None:
    # When a partner signs up with markup and script in its name
    portal.open()
    portal.sign_up(XSS_NAME, new_email("xss"))

    # Then the page shows the name as the characters it is, and nothing of it ran
    assert portal.page.inner_text("#issued-name") == XSS_NAME
    assert portal.page.evaluate("window.__xss") is None
    assert portal.page.locator("#issued-name script, #issued-name img").count() == 0
    portal.screenshot("4-signup-hostile-name")


def test_a_refused_signup_shows_the_apis_message(portal: PortalPage) -> None:
    # Given an address that already has a key
    email = new_email("twice")
    portal.open()
    portal.sign_up("First", email)

    # When it is used again in a fresh page
    portal.open()
    portal.page.fill("#signup-name", "Second")
    portal.page.fill("#signup-email", email)
    portal.page.click("#signup-submit")

    # Then the API's own words are shown, in an alert
    portal.page.wait_for_selector("#signup-error:not([hidden])")
    assert portal.page.get_attribute("#signup-error", "role") == "alert"
    assert "already" in portal.page.inner_text("#signup-error").lower()
    portal.screenshot("6-signup-refused")


def test_the_signup_is_sent_with_an_idempotency_key_reused_on_retry(portal: PortalPage) -> None:
    # Given the page, with the first signup attempt answered by a network failure
    portal.open()
    sent: list[dict[str, str]] = []
    failed = []

    def first_fails(route: object) -> None:
        sent.append(route.request.headers)  # type: ignore[attr-defined]
        if not failed:
            failed.append(True)
            route.abort()  # type: ignore[attr-defined]
        else:
            route.continue_()  # type: ignore[attr-defined]

    portal.page.route(re.compile(r".*/signup$"), first_fails)
    portal.page.fill("#signup-name", "Retry Ltd")
    portal.page.fill("#signup-email", new_email("retry"))

    # When the partner presses the button, sees the failure, and presses it again
    portal.page.click("#signup-submit")
    portal.page.wait_for_selector("#signup-error:not([hidden])")
    portal.page.click("#signup-submit")
    portal.page.wait_for_selector("#signup-result:not([hidden])")

    # Then both attempts carried the same Idempotency-Key, a UUID
    keys = [headers["idempotency-key"] for headers in sent]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert uuid.UUID(keys[0])


def test_every_portal_answer_carries_the_security_headers(portal: PortalPage) -> None:
    # When the browser loads the page and its assets
    answers: list[Any] = []

    def keep(answer: Any) -> None:  # Playwright's emitter takes functions, not a list's bound method
        answers.append(answer)

    portal.page.on("response", keep)
    portal.open()

    # Then each of them has the CSP and the other headers
    portal_answers = [answer for answer in answers if "/portal" in answer.url]
    assert {answer.url.rsplit("/", 1)[-1] for answer in portal_answers} >= {
        "portal",
        "portal.css",
        "portal.js",
        "config.json",
    }
    for answer in portal_answers:
        headers = answer.all_headers()
        assert answer.status == HTTPStatus.OK, answer.url
        assert "frame-ancestors 'none'" in headers["content-security-policy"], answer.url
        assert "script-src 'self'" in headers["content-security-policy"], answer.url
        assert headers["x-content-type-options"] == "nosniff", answer.url
        assert headers["referrer-policy"] == "no-referrer", answer.url


def test_the_form_works_with_the_keyboard_alone(portal: PortalPage) -> None:
    # Given the page, focus at its start
    portal.open()
    keyboard = portal.page.keyboard

    def focused() -> str:
        return str(portal.page.evaluate("document.activeElement.id || document.activeElement.textContent"))

    # When the partner tabs through it: skip link, the two views, then the form's fields in order
    order = []
    for _ in range(7):
        keyboard.press("Tab")
        order.append(focused())
    assert order == [
        "Skip to content",
        "Sign up",
        "My usage",
        "signup-name",
        "signup-email",
        "tier-free",
        "signup-submit",
    ]

    # And fills it in, picks a tier with the arrow keys and sends it with Enter
    portal.page.focus("#signup-name")
    keyboard.type("Keys Only")
    keyboard.press("Tab")
    keyboard.type(new_email("keys"))
    keyboard.press("Tab")
    keyboard.press("ArrowDown")
    assert portal.page.is_checked("#tier-pro")
    keyboard.press("Tab")
    assert focused() == "signup-submit"
    keyboard.press("Enter")

    # Then the key is shown, and focus moved to it for screen readers and keyboards
    portal.page.wait_for_selector("#signup-result:not([hidden])")
    assert focused() == "result-title"
    assert portal.page.inner_text("#issued-tier") == "pro"
    # the visible focus ring is there (the stylesheet's :focus-visible outline)
    keyboard.press("Tab")
    outline = portal.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_a_phone_shows_the_page_without_sideways_scrolling(phone: PortalPage) -> None:
    # Given a phone-sized screen
    phone.open()
    phone.screenshot("7-phone-signup")

    # Then nothing is wider than the screen, before and after signing up
    overflow = "document.scrollingElement.scrollWidth - window.innerWidth"
    assert phone.page.evaluate(overflow) <= 0
    phone.sign_up("Phone Partner", new_email("phone"))
    assert phone.page.evaluate(overflow) <= 0
    phone.page.click("#go-usage")
    phone.page.wait_for_selector("#usage-result:not([hidden])")
    assert phone.page.evaluate(overflow) <= 0
    phone.screenshot("8-phone-usage")
