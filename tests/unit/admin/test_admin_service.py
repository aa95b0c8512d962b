"""The operator console's service with in-memory ports: paging and its `next` token, 404s, and the audit rule
every change follows (recorded before it runs, finished after, published with kind=operator-action)."""

from typing import Any

import pytest
from pydantic import ValidationError

from core.admin.models import MAX_REASON_LENGTH, Operator, OperatorRequest, PartnerQuery
from core.admin.service import AdminService, page_token
from core.admin.settings import AdminSettings
from core.errors import InvalidRequest, PartnerNotActive, PartnerNotFound
from core.models import Partner, PartnerStatus
from tests.fakes import (
    MemoryApiKeys,
    MemoryAuditLog,
    MemoryPartnerIndex,
    OperatorTopic,
    active_partner,
    memory_rotation,
)

OPERATOR = Operator(arn="arn:aws:iam::123456789012:user/alice", access_key="AKIA1", request_id="r-1")
SETTINGS = AdminSettings(
    stack_name="s", partners_table="p", metering_table="m", alert_topic_arn="arn:aws:sns:us-east-1:1:t"
)


def partners(count: int) -> list[Partner]:
    return [
        active_partner(f"k{n:02d}", tier="pro" if n % 2 else "free", email=f"p{n}@example.com") for n in range(count)
    ]


def service(
    found: list[Partner] | None = None, topic: OperatorTopic | None = None
) -> tuple[AdminService, MemoryAuditLog, OperatorTopic]:
    audit, topic = MemoryAuditLog(), topic or OperatorTopic()
    index = MemoryPartnerIndex(found if found is not None else partners(5))
    return (
        AdminService(
            SETTINGS,
            partners=index,
            audit=audit,
            notifier=topic,
            keys=MemoryApiKeys(),
            rotation=memory_rotation(index),
            clock=lambda: 1_780_000_000,
        ),
        audit,
        topic,
    )


def test_partners_come_in_pages_linked_by_next_tokens() -> None:
    admin, _, _ = service(partners(5))

    # When an operator reads pages of 2 until there is no next token
    seen, token, pages = [], None, 0
    while True:
        page = admin.list_partners(PartnerQuery(limit=2, next=token))
        seen += [partner.partner_id for partner in page.partners]
        pages += 1
        if page.next is None:
            break
        token = page.next

    # Then every partner came once, in three pages, and a summary shows the key's id and prefix, never a value
    assert (seen, pages) == ([f"p_k{n:02d}" for n in range(5)], 3)
    first = admin.list_partners(PartnerQuery(limit=1)).partners[0]
    assert (first.api_key_id, first.key_prefix, first.tier, first.status) == ("k00", "AbCd", "free", "ACTIVE")


def test_filters_select_by_tier_status_and_email() -> None:
    admin, _, _ = service(partners(5))
    assert [p.partner_id for p in admin.list_partners(PartnerQuery(tier="pro")).partners] == ["p_k01", "p_k03"]
    assert [p.partner_id for p in admin.list_partners(PartnerQuery(email="P2@Example.com")).partners] == ["p_k02"]
    assert admin.list_partners(PartnerQuery(status=PartnerStatus.DISABLED)).partners == []


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "e30",  # {}
        page_token("p_k01", PartnerQuery(tier="free").filters),  # made for other filters
        page_token("../../etc", PartnerQuery().filters),
        "x" * 400,
    ],
)
def test_a_forged_or_foreign_next_token_is_a_400(token: str) -> None:
    admin, _, _ = service()
    with pytest.raises(InvalidRequest) as refused:
        admin.list_partners(PartnerQuery(next=token))
    assert refused.value.details == [{"field": "next", "message": "invalid; start again without it"}]


@pytest.mark.parametrize("partner_id", ["p_nobody", "p_../x", "", "a" * 65])
def test_an_unknown_or_malformed_partner_id_is_not_found(partner_id: str) -> None:
    admin, _, _ = service()
    with pytest.raises(PartnerNotFound):
        admin.show_partner(partner_id)


def test_a_change_is_recorded_before_it_runs_finished_after_and_published() -> None:
    admin, audit, topic = service()
    seen_during: list[str] = []

    def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
        seen_during.append(audit.trail(partner.partner_id, 1)[0].outcome)
        return partner.model_copy(update={"status": PartnerStatus.DISABLED}), {"enabled": 0}

    # When an operator acts on a partner
    result = admin.act(OPERATOR, "p_k01", "suspend", "abuse report #12", change)

    # Then the entry existed (started) while the change ran, and ends applied with who, what, when and why
    assert seen_during == ["started"]
    entry = admin.show_partner("p_k01").audit[0]
    assert entry.model_dump() == {
        "partner_id": "p_k01",
        "seq": 1,
        "at": "2026-05-28T20:26:40+00:00",
        "actor": OPERATOR.arn,
        "action": "suspend",
        "reason": "abuse report #12",
        "outcome": "applied",
        "details": {"enabled": 0},
        "request_id": "r-1",
        "notified": True,
    }
    assert result.audit == entry and result.partner.status == "DISABLED"
    # And the operators' topic got it with kind=operator-action
    [(subject, message, attributes)] = topic.published
    assert attributes == {"kind": "operator-action", "action": "suspend", "partner_id": "p_k01"}
    assert isinstance(message, dict) and (message["actor"], message["reason"]) == (OPERATOR.arn, "abuse report #12")
    assert subject == "Operator action: suspend p_k01"


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [(PartnerNotActive("p_k01", "SUSPENDED", "an extension"), "refused"), (RuntimeError("x"), "failed")],
)
def test_a_refused_or_failed_change_is_recorded_so_and_not_published(raised: Exception, outcome: str) -> None:
    admin, audit, topic = service()

    def change(partner: Partner) -> tuple[Partner, dict[str, Any]]:
        raise raised

    with pytest.raises(type(raised)):
        admin.act(OPERATOR, "p_k01", "extend", "because", change)

    [entry] = audit.trail("p_k01", 10)
    assert (entry.outcome, entry.details, entry.notified) == (outcome, {"error": type(raised).__name__}, False)
    assert topic.published == []


def test_a_change_whose_notification_fails_is_applied_and_says_so() -> None:
    admin, audit, _ = service(topic=OperatorTopic(fails=True))

    result = admin.act(OPERATOR, "p_k01", "suspend", "because", lambda partner: (partner, {}))

    assert (result.audit.outcome, result.audit.notified) == ("applied", False)
    assert audit.trail("p_k01", 1)[0].notified is False


def test_an_action_on_an_unknown_partner_records_nothing() -> None:
    admin, audit, topic = service()
    with pytest.raises(PartnerNotFound):
        admin.act(OPERATOR, "p_nobody", "suspend", "because", lambda partner: (partner, {}))
    assert (audit.entries, topic.published) == ({}, [])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * (MAX_REASON_LENGTH + 1)},
        {"reason": "line\nbreak"},
        {"reason": "tab\there"},
        {"reason": "bidi \u202e override"},
        {"reason": 12},
        {"reason": "ok", "extra": 1},
    ],
)
def test_every_change_needs_a_plain_reason(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OperatorRequest.model_validate(body)
    assert OperatorRequest.model_validate({"reason": "  ok  "}).reason == "ok"
