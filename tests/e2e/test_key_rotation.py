"""Key rotation over real HTTP on the offline stack, the operator's calls SigV4-signed by botocore: with no grace
the old key is refused at once and the new key works with the old standing; with a grace both work until the
sweep, run when the account's clock has moved past the grace, deletes the old one."""

import json
import time
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from tests.e2e.conftest import Answer, RunningStack, http, signed
from tests.e2e.test_admin_console import sign_up

pytestmark = pytest.mark.e2e


def control(stack: RunningStack, path: str, body: Any = None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the stack's own control endpoint on 127.0.0.1
        f"{stack.info['control_url']}/{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


@pytest.fixture
def clock(metered_stack: RunningStack) -> Iterator[None]:
    """The account's clock is moved by the test and put back to the real time after it."""
    yield
    control(metered_stack, "clock", {"reset": True})


def paced(method: str, url: str, key: str, body: Any = None) -> Answer:
    """A call as a client makes it on the free tier's tight throttle (1/s here): a 429 is retried a second later
    (throttled calls count against nothing)."""
    for _ in range(10):
        answer = http(method, url, headers={"Authorization": f"Bearer {key}"}, body=body)
        if answer.status != HTTPStatus.TOO_MANY_REQUESTS:
            return answer
        time.sleep(1)
    return answer


def models(stack: RunningStack, key: str) -> int:
    return paced("GET", stack.url("/v1/models"), key).status


def usage(stack: RunningStack, key: str) -> dict[str, Any]:
    answer = paced("GET", stack.url("/v1/usage"), key)
    assert answer.status == HTTPStatus.OK, answer
    return dict(answer.body)


def chat(stack: RunningStack, key: str) -> None:
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 16}
    answer = paced("POST", stack.url("/v1/chat/completions"), key, body)
    assert answer.status == HTTPStatus.OK, answer


def rotate(stack: RunningStack, partner_id: str, grace: int) -> dict[str, Any]:
    answer = signed(
        stack, "POST", f"/admin/partners/{partner_id}/key", body={"reason": "e2e rotation", "grace_seconds": grace}
    )
    assert answer.status == HTTPStatus.OK, answer
    return dict(answer.body)


def test_without_grace_the_old_key_is_refused_at_once_and_the_new_one_keeps_the_standing(
    metered_stack: RunningStack,
) -> None:
    # Given a partner that made calls, chat included (requests and tokens this period)
    partner = sign_up(metered_stack)
    old = partner["api_key"]
    chat(metered_stack, old)
    for _ in range(3):
        assert models(metered_stack, old) == HTTPStatus.OK
    before = usage(metered_stack, old)

    # When an operator rotates its key without grace
    rotated = rotate(metered_stack, partner["partner_id"], grace=0)
    new = rotated["api_key"]

    # Then the old key gets API Gateway's 403 at once, the new one works...
    assert models(metered_stack, old) == HTTPStatus.FORBIDDEN
    assert models(metered_stack, new) == HTTPStatus.OK
    # ... with the old standing: the requests used (5 before, the usage call included, + this one + the
    # models call) and the tokens used carry over, they do not start again
    after = usage(metered_stack, new)
    assert after["requests"]["used"] == before["requests"]["used"] + 2
    assert after["requests"]["remaining"] == before["requests"]["remaining"] - 2
    assert after["tokens"]["used"] == before["tokens"]["used"] > 0
    assert rotated["retired_key"]["deleted"] is True and new != old


def test_with_a_grace_both_keys_work_until_the_sweep_after_the_clock_moved(
    metered_stack: RunningStack, clock: None
) -> None:
    partner = sign_up(metered_stack)
    old = partner["api_key"]

    rotated = rotate(metered_stack, partner["partner_id"], grace=120)
    new = rotated["api_key"]

    # Both keys work during the grace; the old key's calls count for the partner's current key
    assert (models(metered_stack, old), models(metered_stack, new)) == (HTTPStatus.OK, HTTPStatus.OK)
    assert usage(metered_stack, old)["requests"]["used"] == usage(metered_stack, new)["requests"]["used"] - 1

    # When the account's clock passes the grace and the sweep runs (as its schedule would)
    control(metered_stack, "clock", {"advance_seconds": 180})
    swept = control(metered_stack, "invoke/SignupSweepFunction")
    assert swept["ok"], swept
    assert swept["result"]["retired_deleted"] >= 1

    # Then only the new key works
    assert models(metered_stack, old) == HTTPStatus.FORBIDDEN
    assert models(metered_stack, new) == HTTPStatus.OK
