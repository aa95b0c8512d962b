"""The partner portal in a real headless Chromium: Debian's `chromium` package driven by Playwright for Python
(launched with that executable: no browser download). `make browser` installs the package when it is missing
and runs these tests; elsewhere they are skipped, saying so. Screenshots of each page state go to
PORTAL_SCREENSHOTS (`make browser`: docs/screenshots/, committed; otherwise .local/screenshots/)."""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import PROJECT_ROOT, RunningStack, start_offline

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("PORTAL_SCREENSHOTS") or PROJECT_ROOT / ".local" / "screenshots")
NO_BROWSER = f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium package and runs these tests"

# Root in CI needs --no-sandbox; the rest keep Chromium off the network it would otherwise try at start
# (this machine has none but the stack), so the only requests are the page's own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
# The pro tier is self-service here so the page lists two tiers; free has a small quota so the chart shows it;
# pro and enterprise are sold at (unreachable) billing pages, so the Upgrade buttons show.
PORTAL_PARAMS = (
    "SelfServiceTiers=free,pro FreeQuotaLimit=40 FreeRateLimit=20 FreeBurstLimit=40 "
    "FreeChatCompletionsRateLimit=10 FreeChatCompletionsBurstLimit=20 "
    "PortalUpgradeUrls=pro=https://billing.example/pro,enterprise=https://billing.example/enterprise"
)


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread while it is
# open, and later tests in the same worker that call asyncio.run() (the chat function's ASGI app) would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(NO_BROWSER)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def portal_stack(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("portal") / "state", PORTAL_PARAMS)
    yield stack
    stack.stop()


@dataclass
class PortalPage:
    """One browser context on the portal, with every request it made and every console error."""

    page: Any
    stack: RunningStack
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.stack.url("/portal")

    def open(self, fragment: str = "") -> Any:
        response = self.page.goto(self.url + fragment)
        self.page.wait_for_selector("#tier-options input[type=radio]", state="attached")
        return response

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def sign_up(self, name: str, email: str, tier: str = "free") -> str:
        """Fill the form, send it, and return the key the page shows."""
        self.page.fill("#signup-name", name)
        self.page.fill("#signup-email", email)
        self.page.check(f"#tier-{tier}")
        self.page.click("#signup-submit")
        self.page.wait_for_selector("#signup-result:not([hidden])")
        key: str = self.page.input_value("#issued-key")
        return key

    def foreign_requests(self) -> list[str]:
        own = urlsplit(self.stack.info["api_url"]).netloc
        return [url for url in self.requests if urlsplit(url).netloc != own and not url.startswith("data:")]


def _portal_page(chromium: Any, stack: RunningStack, **context_options: Any) -> Iterator[PortalPage]:
    context = chromium.new_context(**context_options)
    page = context.new_page()
    portal = PortalPage(page, stack)
    context.on("request", lambda request: portal.requests.append(request.url))
    page.on("console", lambda message: portal.console_errors.append(message.text) if message.type == "error" else None)
    yield portal
    context.close()
    # Every test: the page talked to nobody but the stack, and broke none of its own CSP
    assert portal.foreign_requests() == []
    assert [text for text in portal.console_errors if "Content Security Policy" in text] == []


@pytest.fixture
def portal(chromium: Any, portal_stack: RunningStack) -> Iterator[PortalPage]:
    yield from _portal_page(
        chromium,
        portal_stack,
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )


@pytest.fixture
def phone(chromium: Any, portal_stack: RunningStack) -> Iterator[PortalPage]:
    yield from _portal_page(
        chromium,
        portal_stack,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
