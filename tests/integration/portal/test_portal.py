"""GET /portal and its assets, in-process with the environment template.yaml gives PortalFunction."""

import copy
import json
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from core.portal import service as portal
from core.portal.settings import PortalSettings
from core.settings import forget_settings
from handlers import portal as portal_handler
from offline.provision import provision
from offline.template import StackTemplate, load_template
from tests.lambda_events import LambdaContext, sample_event

PARAMETERS = {
    "SelfServiceTiers": "free,pro",
    "ProModels": "*",
    "PortalUpgradeUrls": "pro=https://billing.example/pro,enterprise=https://billing.example/enterprise",
}


@pytest.fixture(scope="module")
def portal_template() -> StackTemplate:
    return load_template(overrides=PARAMETERS)


@pytest.fixture
def portal_env(aws: None, portal_template: StackTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    stack = provision(portal_template)
    variables = portal_template.resources["PortalFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    forget_settings()
    yield
    forget_settings()


pytestmark = pytest.mark.usefixtures("portal_env")


def get(path: str) -> dict[str, Any]:
    event = copy.deepcopy(sample_event("portal.json"))
    resource = "/portal" if path == "/portal" else "/portal/{asset}"
    event.update(path=path, resource=resource)
    event["pathParameters"] = {"asset": path.removeprefix("/portal/")} if resource != "/portal" else None
    event["requestContext"].update(resourcePath=resource, path=f"/live{path}")
    result: dict[str, Any] = portal_handler.handler(event, LambdaContext(function_name="PortalFunction"))
    return result


def headers_of(result: dict[str, Any]) -> dict[str, str]:
    found = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
    found |= {name.lower(): values[-1] for name, values in (result.get("multiValueHeaders") or {}).items()}
    return found


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/portal", "text/html; charset=utf-8"),
        ("/portal/portal.js", "text/javascript; charset=utf-8"),
        ("/portal/portal.css", "text/css; charset=utf-8"),
        ("/portal/icon.svg", "image/svg+xml"),
        ("/portal/config.json", "application/json"),
    ],
)
def test_each_page_and_asset_is_served_as_text_with_its_content_type(path: str, content_type: str) -> None:
    # When a visitor's browser asks for it
    result = get(path)

    # Then it is there, as text (no base64, so no BinaryMediaTypes on the API)
    assert result["statusCode"] == HTTPStatus.OK
    assert headers_of(result)["content-type"] == content_type
    assert result.get("isBase64Encoded") in (None, False)
    assert result["body"]


@pytest.mark.parametrize("path", ["/portal", "/portal/portal.js", "/portal/config.json", "/portal/nope.js"])
def test_every_answer_carries_the_security_headers(path: str) -> None:
    # When any portal path is asked for, one that does not exist included
    headers = headers_of(get(path))

    # Then the page may run only its own scripts and styles, talk only to its own origin, and not be framed
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "name",
    ["nope.js", "..%2Ftemplate.yaml", "../handlers/portal.py", ".hidden.js", "INDEX.HTML", "portal.py", "a" * 300],
)
def test_an_unknown_or_hostile_asset_name_is_404(name: str) -> None:
    # When a name that is not one of the portal's files is asked for
    result = get(f"/portal/{name}")

    # Then the answer is 404, and no other file is read
    assert result["statusCode"] == HTTPStatus.NOT_FOUND
    assert "<" not in result["body"]


def test_the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    # Given the page
    html = get("/portal")["body"]

    # Then its script and stylesheet are its own files, by relative URL
    assert '<script src="portal/portal.js" defer></script>' in html
    assert 'href="portal/portal.css"' in html
    assert "<style" not in html
    assert " style=" not in html
    assert " on" + "click=" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_config_lists_the_self_service_tiers_from_the_deployment() -> None:
    # Given the stack deployed with SelfServiceTiers=free,pro and upgrade URLs for pro and enterprise
    config = json.loads(get("/portal/config.json")["body"])

    # Then the page is told those tiers, in that order, with their template limits and models
    settings = PortalSettings()  # type: ignore[call-arg]
    assert [tier["name"] for tier in config["tiers"]] == ["free", "pro"]
    free = config["tiers"][0]
    policy = settings.tiers["free"]
    assert free["limits"] == {
        "rate_limit": policy.rate_limit,
        "burst_limit": policy.burst_limit,
        "quota_limit": policy.quota_limit,
        "quota_period": policy.quota_period,
        "token_budget": policy.token_budget,
        "chat_completions": policy.chat_completions_throttle,
    }
    assert free["models"] == [model.name for model in policy.allowed_models(settings.models)]
    # `*` is spelled out as the catalog's models
    assert config["tiers"][1]["models"] == settings.models.names()
    assert config["upgrades"] == [
        {"tier": "pro", "url": "https://billing.example/pro"},
        {"tier": "enterprise", "url": "https://billing.example/enterprise"},
    ]
    assert config["alert_emails"] is False
    assert config["double_opt_in"] is False


@pytest.mark.parametrize(
    "urls",
    ["pro=javascript:alert(1)", "pro=http://billing.example", "pro", "gold=https://billing.example/gold"],
)
def test_an_upgrade_url_that_is_not_https_or_names_no_tier_is_refused_at_start(
    urls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an upgrade URL the page must not link to (a script URL, plain http, no URL, an unknown tier)
    monkeypatch.setenv("PORTAL_UPGRADE_URLS", urls)

    # Then the function's settings refuse it
    with pytest.raises(ValueError, match=r"PORTAL_UPGRADE_URLS|https|TIERS"):
        PortalSettings()  # type: ignore[call-arg]


def test_assets_are_read_from_the_shipped_folder_only() -> None:
    # The folder sits beside the handlers under CodeUri src/, so sam build ships it
    assert portal.ASSETS_DIR.name == "portal_assets"
    assert (portal.ASSETS_DIR.parent / "handlers").is_dir()
    assert {"index.html", "portal.js", "portal.css", "icon.svg"} <= {path.name for path in portal.ASSETS_DIR.iterdir()}


def test_the_script_never_writes_html_from_data() -> None:
    # Given the page's script: every value it shows comes from the API or the visitor
    script = get("/portal/portal.js")["body"]

    # Then it writes text and attributes only, and never evaluates strings
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    # and it keeps the key in sessionStorage, never in localStorage or a cookie
    assert "localStorage" not in script
    assert "document.cookie" not in script


def test_the_alert_opt_in_and_double_opt_in_follow_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployment with a sender of partner emails and double opt-in
    monkeypatch.setenv("PARTNER_ALERT_SENDER", "alerts@example.com")
    monkeypatch.setenv("DOUBLE_OPT_IN", "true")
    forget_settings()

    # When the page asks for its config
    config = json.loads(get("/portal/config.json")["body"])

    # Then it offers alert emails and knows the key arrives by email
    assert config["alert_emails"] is True
    assert config["double_opt_in"] is True


def test_the_portal_with_a_trailing_slash_redirects_to_the_portal() -> None:
    event = copy.deepcopy(sample_event("portal.json"))
    event.update(path="/portal/", resource="/portal")
    event["requestContext"].update(resourcePath="/portal", path="/live/portal/")

    result = portal_handler.handler(event, LambdaContext(function_name="PortalFunction"))

    assert result["statusCode"] == HTTPStatus.MOVED_PERMANENTLY
    assert result["multiValueHeaders"]["Location"] == ["../portal"]
    assert "Content-Security-Policy" in result["multiValueHeaders"]
