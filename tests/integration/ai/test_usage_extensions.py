"""A usage extension seen from the AI API, in-process on the emulated stack with a small token budget: a key
refused for its token budget is served after an operator's token extension, /v1/usage shows the extension, and
tokens carried from a previous key count as used in the budget's one conditional write."""

from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus

import pytest

from core.adapters.ledger_carry import LedgerCarryTable
from core.admin.service import admin_service
from core.key_rotation import CarriedLedger
from core.periods import period_bounds
from core.settings import forget_settings
from handlers import usage
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.integration.admin.conftest import call as admin_call
from tests.integration.ai.test_ai_api import (  # noqa: F401 - fixtures
    ai_stack,
    ai_template,
    call,
    chat,
    event,
    ledger,
    sign_up,
)


@pytest.fixture
def console(ai_stack: ProvisionedStack, ai_template: StackTemplate, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:  # noqa: F811
    variables = ai_template.resources["AdminFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in ai_stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    forget_settings()
    admin_service.cache_clear()
    yield
    admin_service.cache_clear()


def test_a_key_refused_for_its_token_budget_is_served_after_a_token_extension(
    ai_stack: ProvisionedStack,  # noqa: F811
    console: None,
) -> None:
    # Given a free partner (200 tokens a day) that used 150 and is refused a request reserving 60
    partner = sign_up()
    assert chat(partner.api_key_id, words=75, max_tokens=75).status == HTTPStatus.OK
    assert chat(partner.api_key_id, words=10, max_tokens=50).status == HTTPStatus.TOO_MANY_REQUESTS

    # When an operator grants 100 tokens for this period
    granted = admin_call(
        "POST", f"/admin/partners/{partner.partner_id}/extensions", {"tokens": 100, "reason": "demo day"}
    )
    assert granted.status == HTTPStatus.OK, granted

    # Then the same request is served, and the ledger holds the grant next to the usage
    assert chat(partner.api_key_id, words=10, max_tokens=50).status == HTTPStatus.OK
    counters = ledger(ai_stack, partner)
    assert (counters["extension_tokens"], counters["extension_requests"]) == (100, 0)
    assert counters["committed_tokens"] == counters["prompt_tokens"] + counters["completion_tokens"] - 100
    # And /v1/usage shows the budget with the extension, and what is left of it
    shown = call(usage.handler, event("get_usage.json", partner.api_key_id)).body
    used = counters["prompt_tokens"] + counters["completion_tokens"]
    assert (shown["tokens"]["budget"], shown["tokens"]["extension"], shown["tokens"]["remaining"]) == (
        300, 100, 300 - used,
    )  # fmt: skip
    # And a reservation past the extended budget is refused again
    assert chat(partner.api_key_id, words=10, max_tokens=300).status == HTTPStatus.TOO_MANY_REQUESTS


def test_tokens_carried_from_a_previous_key_count_against_the_budget(ai_stack: ProvisionedStack) -> None:  # noqa: F811
    # Given a new key whose partner's previous key used 180 of the 200 tokens this period (key rotation)
    partner = sign_up()
    start, reset = period_bounds("DAY", datetime.now(UTC))
    LedgerCarryTable(ai_stack.physical_ids["MeteringTable"]).start(
        partner.api_key_id, start, reset, partner, carried=CarriedLedger(tokens=180), carried_requests=0
    )

    # Then a request reserving more than the 20 left is refused, one that fits is served
    assert chat(partner.api_key_id, words=10, max_tokens=15).status == HTTPStatus.TOO_MANY_REQUESTS
    assert chat(partner.api_key_id, words=5, max_tokens=5).status == HTTPStatus.OK
    shown = call(usage.handler, event("get_usage.json", partner.api_key_id)).body
    assert (shown["tokens"]["carried"], shown["tokens"]["budget"]) == (180, 200)
    # ("used" is the partner's this period: the carried tokens and this key's own)
    assert shown["tokens"]["used"] == 180 + shown["tokens"]["prompt"] + shown["tokens"]["completion"]
    assert shown["tokens"]["remaining"] == 200 - shown["tokens"]["used"]


def test_a_rotation_after_a_token_extension_leaves_the_same_tokens_to_the_new_key(
    ai_stack: ProvisionedStack,  # noqa: F811
    console: None,
) -> None:
    # Given a free partner (200 tokens a day) that used some and was granted 100 more
    partner = sign_up()
    assert chat(partner.api_key_id, words=75, max_tokens=75).status == HTTPStatus.OK
    granted = admin_call("POST", f"/admin/partners/{partner.partner_id}/extensions", {"tokens": 100, "reason": "demo"})
    assert granted.status == HTTPStatus.OK, granted
    before = call(usage.handler, event("get_usage.json", partner.api_key_id)).body["tokens"]

    # When its key is rotated
    rotated = admin_call("POST", f"/admin/partners/{partner.partner_id}/key", {"reason": "lost it", "grace_seconds": 0})
    assert rotated.status == HTTPStatus.OK, rotated

    # Then the new key has the budget with the extension and exactly what the old key had left: neither the
    # extension nor the tokens used are counted twice or lost
    after = call(usage.handler, event("get_usage.json", rotated.body["api_key_id"])).body["tokens"]
    assert (after["budget"], after["extension"], after["remaining"]) == (
        before["budget"], before["extension"], before["remaining"],
    )  # fmt: skip
    assert after["used"] == before["used"]
