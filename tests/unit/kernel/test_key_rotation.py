"""Key rotation and re-issue (core.key_rotation) on in-memory ports: the new key joins the plan with the old key's
standing, the partner record switches in one conditional write, the old key goes now or after its grace, and a
failure at any step leaves the partner with its old key and plan and no new key that nothing records."""

from datetime import UTC, datetime

import pytest

from core.errors import PartnerNotActive, TierChangeInProgress
from core.key_rotation import ISSUING_LEASE_SECONDS, MAX_GRACE_SECONDS, RetiredKeySweep
from core.models import Partner, PartnerStatus
from core.periods import period_bounds
from tests.fakes import (
    FREE_PLAN,
    MemoryKeyGateway,
    MemoryLedgerCarry,
    MemoryPartnerIndex,
    MemoryRetiredKeys,
    active_partner,
    memory_rotation,
)

NOW = 1_780_000_000
PERIOD_START, _ = period_bounds("DAY", datetime.fromtimestamp(NOW, UTC))


class World:
    """One partner on the free plan (100 requests a day), its key `old` with 30 used and 70 left, 500 tokens
    committed this period and 31 requests in the ledger (one the lagging GetUsage has not reported yet)."""

    def __init__(self, partner: Partner | None = None, *, gateway_fails: str | None = None) -> None:
        self.partner = partner or active_partner("old")
        self.index = MemoryPartnerIndex([self.partner])
        self.gateway = MemoryKeyGateway([FREE_PLAN], fail=gateway_fails)
        if self.partner.status is PartnerStatus.ACTIVE:
            self.gateway.add_key("old", FREE_PLAN.id, used=30, remaining=70)
        self.records = MemoryRetiredKeys(self.index)
        self.ledger = MemoryLedgerCarry()
        self.ledger.items[("old", PERIOD_START)] = {"requests": 31, "committed_tokens": 500}
        self.rotation = memory_rotation(self.index, self.gateway, self.records, self.ledger, clock=NOW)

    @property
    def current(self) -> Partner:
        return self.index.partners[self.partner.partner_id]

    def sweep(self, at: float) -> None:
        RetiredKeySweep(self.gateway, self.records).run(at, time_left=lambda: 60, reserve_seconds=1)


def test_a_rotation_without_grace_replaces_the_key_with_the_old_standing_and_deletes_the_old_key() -> None:
    world = World()

    rotated = world.rotation.rotate(world.partner, grace_seconds=0)

    new = rotated.key.id
    # The partner names the new key (its prefix, never its value), which is enabled in the partner's plan
    assert (world.current.api_key_id, world.current.key_prefix) == (new, rotated.key.value.get_secret_value()[:4])
    assert world.gateway.keys[new]["enabled"] and world.gateway.keys[new]["plan"] == FREE_PLAN.id
    # With the old key's standing: the lower of GetUsage's 70 left and the ledger's 100 - 31 requests...
    assert rotated.requests_remaining == world.gateway.keys[new]["remaining"] == 69
    # ... and the old key's committed tokens, carried on the new key's ledger item
    assert world.ledger.items[(new, PERIOD_START)] == {
        "carried_tokens": 500, "committed_tokens": 500, "carried_requests": 100 - 69,
    }  # fmt: skip
    # The old key is gone at once, nothing is left to sweep
    assert world.gateway.live() == {new}
    assert rotated.old_key_deleted and world.records.retirements == {}
    assert "value" not in str(rotated.details)


def test_with_a_grace_both_keys_work_until_the_sweep_deletes_the_old_one_when_due() -> None:
    world = World()

    rotated = world.rotation.rotate(world.partner, grace_seconds=3600)

    assert world.gateway.live() == {"old", rotated.key.id} and not rotated.old_key_deleted
    assert rotated.retire_at == NOW + 3600
    world.sweep(at=NOW + 3599)
    assert world.gateway.live() == {"old", rotated.key.id}
    world.sweep(at=NOW + 3600)
    assert world.gateway.live() == {rotated.key.id}
    assert world.records.retirements == {}


@pytest.mark.parametrize("status", [PartnerStatus.REVOKED, PartnerStatus.DORMANT])
def test_a_keyless_partner_gets_a_key_again_and_is_active(status: PartnerStatus) -> None:
    # Given a partner whose key an operator revoked or the dormant sweep deleted
    world = World(active_partner("old", status=status, held_status=PartnerStatus.ACTIVE))

    rotated = world.rotation.rotate(world.partner, grace_seconds=0)

    # Then it is ACTIVE with a new key; its period's requests (the ledger's) and tokens still count
    assert (world.current.status, world.current.held_status) == (PartnerStatus.ACTIVE, None)
    assert rotated.retired_key_id is None and rotated.retire_at is None
    assert rotated.requests_remaining == 100 - 31
    assert world.ledger.items[(rotated.key.id, PERIOD_START)]["carried_tokens"] == 500
    assert ("key_usage", "old") not in world.gateway.calls  # a deleted key has no usage to read


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (PartnerStatus.SUSPENDED, PartnerStatus.ACTIVE),  # resume first
        (PartnerStatus.DISABLED, None),  # billing cancelled it
        (PartnerStatus.REVOKED, PartnerStatus.DISABLED),  # revoked, and billing cancelled it meanwhile
    ],
)
def test_a_held_or_cancelled_partner_gets_no_key(status: PartnerStatus, held: PartnerStatus | None) -> None:
    world = World(active_partner("old", status=status, held_status=held))

    with pytest.raises(PartnerNotActive):
        world.rotation.rotate(world.partner, grace_seconds=0)

    assert world.gateway.calls == [] and world.current == world.partner


@pytest.mark.parametrize(
    "step", ["create_disabled_key", "attach_key", "key_usage", "set_remaining_quota", "enable_key"]
)
def test_a_failed_api_gateway_step_leaves_the_old_key_and_no_new_one(step: str) -> None:
    world = World(gateway_fails=step)

    with pytest.raises(RuntimeError):
        world.rotation.rotate(world.partner, grace_seconds=0)

    assert world.current == world.partner
    assert world.gateway.live() == {"old"} and world.gateway.keys["old"]["plan"] == FREE_PLAN.id
    assert world.records.retirements == {}


@pytest.mark.parametrize("step", ["retire_later", "switch_key"])
def test_a_failed_table_write_leaves_the_old_key_and_no_new_one(step: str) -> None:
    world = World()
    world.records.fail = step

    with pytest.raises(RuntimeError):
        world.rotation.rotate(world.partner, grace_seconds=0)

    assert world.current == world.partner
    assert world.gateway.live() == {"old"} and world.records.retirements == {}


def test_a_new_key_whose_undo_failed_is_deleted_by_the_sweep_after_its_lease() -> None:
    # Given a rotation whose switch failed and whose undo (DeleteApiKey) failed too
    world = World()
    world.records.fail = "switch_key"
    original_delete = world.gateway.delete_key

    def delete_fails_once(key_id: str) -> None:
        world.gateway.delete_key = original_delete  # type: ignore[method-assign]
        raise RuntimeError("DeleteApiKey throttled")

    world.gateway.delete_key = delete_fails_once  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.rotation.rotate(world.partner, grace_seconds=0)
    [leftover] = world.gateway.live() - {"old"}
    assert world.records.retirements[leftover].reason == "issuing"

    # When the sweep runs before the lease ends, then after
    world.sweep(at=NOW + ISSUING_LEASE_SECONDS - 1)
    assert leftover in world.gateway.live()
    world.sweep(at=NOW + ISSUING_LEASE_SECONDS)

    # Then only the partner's own key is left
    assert world.gateway.live() == {"old"} and world.records.retirements == {}


def test_the_loser_of_two_rotations_deletes_its_key_and_answers_409() -> None:
    # Given two rotations that read the same partner
    world = World()
    first = world.rotation.rotate(world.partner, grace_seconds=60)

    # When the second one, started from the same read, tries to switch
    with pytest.raises(TierChangeInProgress):
        world.rotation.rotate(world.partner, grace_seconds=60)

    # Then one new key is live, the winner's; the old key waits for its grace only
    assert world.current.api_key_id == first.key.id
    assert world.gateway.live() == {"old", first.key.id}
    assert set(world.records.retirements) == {"old"}


def test_an_old_key_that_could_not_be_deleted_at_once_is_deleted_by_the_next_sweep() -> None:
    world = World()
    world.records.fail = "drop_retirement"

    rotated = world.rotation.rotate(world.partner, grace_seconds=0)

    assert not rotated.old_key_deleted and world.records.retirements["old"].due_at == NOW
    world.sweep(at=NOW + 1)
    assert world.gateway.live() == {rotated.key.id} and world.records.retirements == {}


def test_the_longest_grace_is_a_week() -> None:
    assert MAX_GRACE_SECONDS == 604_800
