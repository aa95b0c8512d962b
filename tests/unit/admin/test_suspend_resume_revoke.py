"""Suspend, resume and revoke with in-memory ports: the key and the record change together, a failure of either
step leaves the more restrictive state and no half-change, and billing's status survives a suspension."""

import pytest

from core.admin.models import Operator
from core.admin.service import AdminService
from core.errors import PartnerRevoked
from core.models import Partner, PartnerStatus
from tests.fakes import (
    MemoryApiKeys,
    MemoryAuditLog,
    MemoryPartnerIndex,
    OperatorTopic,
    active_partner,
    memory_rotation,
)
from tests.unit.admin.test_admin_service import SETTINGS

OPERATOR = Operator(arn="arn:aws:iam::123456789012:user/alice")


def console(*partners: Partner, fail: str | None = None) -> tuple[AdminService, MemoryPartnerIndex, MemoryApiKeys]:
    index, keys = MemoryPartnerIndex(partners or [active_partner("k1")]), MemoryApiKeys(fail)
    admin = AdminService(
        SETTINGS,
        partners=index,
        audit=MemoryAuditLog(),
        notifier=OperatorTopic(),
        keys=keys,
        rotation=memory_rotation(index),
    )
    return admin, index, keys


def status_of(index: MemoryPartnerIndex) -> tuple[PartnerStatus, PartnerStatus | None]:
    partner = index.partners["p_k1"]
    return partner.status, partner.held_status


def test_suspend_disables_the_key_and_resume_enables_it_again() -> None:
    admin, index, keys = console()

    suspended = admin.suspend(OPERATOR, "p_k1", "abuse report")
    assert (suspended.partner.status, status_of(index), keys.enabled) == (
        "SUSPENDED", (PartnerStatus.SUSPENDED, PartnerStatus.ACTIVE), {"k1": False},
    )  # fmt: skip

    resumed = admin.resume(OPERATOR, "p_k1", "resolved")
    assert (resumed.partner.status, status_of(index), keys.enabled) == (
        "ACTIVE", (PartnerStatus.ACTIVE, None), {"k1": True},
    )  # fmt: skip


def test_resuming_a_cancelled_partner_keeps_its_key_disabled() -> None:
    # Given a partner billing had cancelled (DISABLED), then suspended by an operator
    admin, index, keys = console(active_partner("k1", status=PartnerStatus.DISABLED))
    admin.suspend(OPERATOR, "p_k1", "fraud check")

    # When the suspension is lifted
    admin.resume(OPERATOR, "p_k1", "checked")

    # Then it is back to what billing made it: disabled, key off
    assert status_of(index) == (PartnerStatus.DISABLED, None)
    assert ("enable_key", "k1") not in keys.calls


def test_revoke_deletes_the_key_and_keeps_the_partner() -> None:
    admin, index, keys = console()

    result = admin.revoke(OPERATOR, "p_k1", "key leaked")

    assert status_of(index) == (PartnerStatus.REVOKED, PartnerStatus.ACTIVE)
    assert keys.deleted == {"k1"} and keys.calls[0] == ("disable_key", "k1")
    assert result.audit.details == {"changed": 1, "previous_status": "ACTIVE", "deleted_key_id": "k1"}


@pytest.mark.parametrize("action", ["suspend", "resume"])
def test_a_revoked_partner_cannot_be_suspended_or_resumed(action: str) -> None:
    admin, _, _ = console(active_partner("k1", status=PartnerStatus.REVOKED))
    with pytest.raises(PartnerRevoked):
        getattr(admin, action)(OPERATOR, "p_k1", "why")


def test_a_failed_disable_puts_the_record_back() -> None:
    admin, index, keys = console(fail="disable_key")

    with pytest.raises(RuntimeError):
        admin.suspend(OPERATOR, "p_k1", "abuse")

    # Then nothing changed: the partner is active with its key, and the retry suspends it
    assert status_of(index) == (PartnerStatus.ACTIVE, None)
    admin.suspend(OPERATOR, "p_k1", "abuse")
    assert (status_of(index), keys.enabled) == ((PartnerStatus.SUSPENDED, PartnerStatus.ACTIVE), {"k1": False})


def test_a_failed_record_write_on_resume_disables_the_key_again() -> None:
    admin, index, keys = console()
    admin.suspend(OPERATOR, "p_k1", "abuse")

    def refuse(*_: object, **__: object) -> None:
        raise RuntimeError("DynamoDB failed")

    index.set_status = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        admin.resume(OPERATOR, "p_k1", "resolved")

    assert status_of(index)[0] is PartnerStatus.SUSPENDED and keys.enabled == {"k1": False}


def test_a_failed_delete_leaves_a_disabled_key_on_a_revoked_partner_which_the_retry_deletes() -> None:
    admin, index, keys = console(fail="delete_key")

    with pytest.raises(RuntimeError):
        admin.revoke(OPERATOR, "p_k1", "leaked")
    assert (status_of(index)[0], keys.enabled, keys.deleted) == (PartnerStatus.REVOKED, {"k1": False}, set())

    admin.revoke(OPERATOR, "p_k1", "leaked")
    assert keys.deleted == {"k1"}
