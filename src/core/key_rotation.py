"""A partner gets a new API key: a rotation (an ACTIVE partner's key is replaced; the old key keeps working for a
grace period, then the retired-key sweep deletes it) or a re-issue (a REVOKED or DORMANT partner has no key: it
gets one and is ACTIVE again). In the kernel: the operator console and the partner portal's lost-key recovery
run the same code, and capabilities never import each other.

The steps, and why in this order (README "Operator console", docs/decisions.md "Key rotation"):
1. CreateApiKey, disabled, and at once a retirement of it (`RETIRE#<key id>`, due after a lease longer than any
   function's run): a function killed from here on leaves a key that the sweep deletes, never one nothing records;
2. the key joins the partner's tier plan, with the old key's standing: its remaining quota (GetUsage of the old
   key, UpdateUsage of the new one) and, on its ledger item, the old key's committed tokens this period
   (`carried_tokens`; tokens belong to the partner and the period, so they never start again from zero);
3. the key is enabled;
4. one transaction: the partner record names the new key, conditional on the key, status and tier it was read
   with and on no billing lease (two rotations at once: one wins, the other deletes its key and answers 409),
   with the key's index item, the new key's retirement dropped and the old key's due at now + grace;
5. with no grace the old key is deleted at once and its retirement dropped (if that fails, the sweep does it).
A failure before 4 deletes the new key and its retirement; a failed undo leaves the retirement for the sweep.
The partner keeps its old key and plan until the transaction: no partner is ever without a key in its plan.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from core.errors import NotFound, PartnerNotActive, TierChangeInProgress
from core.models import DailyUsage, IssuedKey, Partner, PartnerStatus, Tier
from core.observability import logger
from core.periods import period_bounds
from core.tiers import TierCatalog, key_name

MAX_GRACE_SECONDS = 7 * 24 * 3600
# A new key's retirement is due this long after its creation unless the rotation finished: longer than any
# function that rotates keys runs (API functions end by 29 s), so a due one belongs to a run that died.
ISSUING_LEASE_SECONDS = 300
KEY_PREFIX_LENGTH = 4
# What the loser of two changes at once is told to wait (409 change_in_progress).
CONFLICT_RETRY_SECONDS = 5
STACK_TAG = "metered-ai:stack"
PARTNER_TAG = "metered-ai:partner-id"


class KeyIssuer(Protocol):
    """API Gateway's keys and usage (the kernel's ApiGateway adapter)."""

    def create_disabled_key(self, name: str, tags: dict[str, str]) -> IssuedKey: ...

    def attach_key(self, plan_id: str, key_id: str) -> None: ...

    def enable_key(self, key_id: str) -> None: ...

    def delete_key(self, key_id: str) -> None:
        """Delete the key; one already gone is fine."""
        ...

    def key_usage(self, plan_id: str, key_id: str, start: date, end: date) -> list[DailyUsage]: ...

    def set_remaining_quota(self, plan_id: str, key_id: str, remaining: int) -> None: ...


@dataclass(frozen=True)
class Retirement:
    """A key to delete once `due_at` (epoch s) has passed: `rotated` (an old key after its grace) or `issuing` (a
    new key whose rotation has not finished; due only if it died)."""

    api_key_id: str
    partner_id: str
    due_at: int
    reason: str


@dataclass(frozen=True)
class CarriedLedger:
    """The old key's ledger item this period: requests it counted, tokens committed (carried in included), and
    the extensions granted (attribute -> amount)."""

    requests: int = 0
    tokens: int = 0
    extensions: tuple[tuple[str, int], ...] = ()


class RetiredKeys(Protocol):
    """The partners table's side of a rotation (core.adapters.retired_keys)."""

    def retire_later(self, retirement: Retirement) -> None: ...

    def switch_key(self, before: Partner, after: Partner, retire_old: Retirement | None, now: float) -> None:
        """Make the partner record `after` (its key index item too) if it is still `before` (key, status, tier)
        and no billing change holds it, dropping the new key's retirement and recording `retire_old`; else
        TierChangeInProgress (409)."""
        ...

    def drop_retirement(self, retirement: Retirement) -> None:
        """Forget a retirement done (unless it changed meanwhile)."""
        ...

    def due_retirements(self, now: float) -> list[Retirement]: ...


class LedgerCarry(Protocol):
    """The metering table's side (core.adapters.ledger_carry): the old key's ledger item for the period, and the
    new key's, started with the standing carried."""

    def standing(self, api_key_id: str, period_start: datetime) -> CarriedLedger:
        """The key's requests and committed tokens (holds included) this period, and its extensions."""
        ...

    def start(
        self,
        api_key_id: str,
        period_start: datetime,
        period_reset: datetime,
        partner: Partner,
        *,
        carried: CarriedLedger,
        carried_requests: int,
    ) -> None:
        """Write the new key's item: `carried_tokens` (also in `committed_tokens`), `carried_requests`, the
        extensions; nothing if it exists."""
        ...


@dataclass(frozen=True)
class RotatedKey:
    """A rotation's outcome. `key` is the new key's value: shown to its owner once, never logged or stored."""

    partner: Partner
    key: IssuedKey
    retired_key_id: str | None
    retire_at: int | None  # epoch s; None: nothing to retire (a re-issue)
    old_key_deleted: bool
    requests_remaining: int | None  # set on the new key (UpdateUsage); None: the tier has no quota
    carried_tokens: int

    @property
    def details(self) -> dict[str, int | str]:
        """What an audit entry records (never the value)."""
        details: dict[str, int | str] = {
            "new_key_id": self.key.id,
            "carried_tokens": self.carried_tokens,
            "old_key_deleted": int(self.old_key_deleted),
        }
        if self.retired_key_id:
            details["retired_key_id"] = self.retired_key_id
        if self.retire_at is not None:
            details["retire_at"] = datetime.fromtimestamp(self.retire_at, UTC).isoformat()
        if self.requests_remaining is not None:
            details["requests_remaining"] = self.requests_remaining
        return details


# Statuses a new key may be given in: ACTIVE (a rotation), and keyless partners (a re-issue) whose billing
# status is active. SUSPENDED (resume first) and DISABLED (billing cancelled) are refused.
REISSUABLE = frozenset({PartnerStatus.REVOKED, PartnerStatus.DORMANT})


class KeyRotation:
    def __init__(
        self,
        stack_name: str,
        *,
        keys: KeyIssuer,
        tiers: TierCatalog,
        records: RetiredKeys,
        ledger: LedgerCarry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stack = stack_name
        self._keys = keys
        self._tiers = tiers
        self._records = records
        self._ledger = ledger
        self._clock = clock

    def rotate(self, partner: Partner, grace_seconds: int, operation: str = "a new key") -> RotatedKey:
        """Give `partner` a new key (the module's docstring). The old key (an ACTIVE partner's) is deleted now
        (`grace_seconds` 0) or by the sweep after the grace."""
        rotation = self._rotation_kind(partner, operation)
        tier = self._tiers.get(partner.tier)
        now = self._clock()
        issued = self._keys.create_disabled_key(
            key_name(self._stack, partner.partner_id), {STACK_TAG: self._stack, PARTNER_TAG: partner.partner_id}
        )
        issuing = Retirement(issued.id, partner.partner_id, int(now) + ISSUING_LEASE_SECONDS, "issuing")
        try:
            self._records.retire_later(issuing)
        except Exception:
            self._quietly_delete(issued.id)
            raise
        old_key = partner.api_key_id if rotation == "rotate" else None
        try:
            remaining, carried = self._join_plan(partner, tier, issued.id, old_key, now)
            self._keys.enable_key(issued.id)
            after = partner.model_copy(
                update={
                    "api_key_id": issued.id,
                    "key_prefix": issued.value.get_secret_value()[:KEY_PREFIX_LENGTH],
                    "status": PartnerStatus.ACTIVE,
                    "held_status": None,
                    "updated_at": datetime.fromtimestamp(now, UTC).isoformat(),
                }
            )
            retire_old = (
                Retirement(old_key, partner.partner_id, int(now) + grace_seconds, "rotated") if old_key else None
            )
            self._records.switch_key(partner, after, retire_old, now)
        except Exception:
            # The partner still has its old key (and plan); the new one goes, or its retirement stays for the sweep.
            self._undo(issuing)
            raise
        deleted = retire_old is not None and grace_seconds == 0 and self._retire_now(retire_old)
        logger.info(
            "issued a new key",
            partner_id=partner.partner_id,
            api_key_id=issued.id,
            retired_key_id=old_key,
            grace_seconds=grace_seconds if old_key else None,
        )
        return RotatedKey(
            partner=after,
            key=issued,
            retired_key_id=old_key,
            retire_at=retire_old.due_at if retire_old else None,
            old_key_deleted=deleted,
            requests_remaining=remaining,
            carried_tokens=carried.tokens,
        )

    @staticmethod
    def _rotation_kind(partner: Partner, operation: str) -> str:
        if partner.status is PartnerStatus.ACTIVE:
            return "rotate"
        billing_status = partner.held_status or PartnerStatus.ACTIVE
        if partner.status in REISSUABLE and billing_status is PartnerStatus.ACTIVE:
            return "reissue"
        raise PartnerNotActive(partner.partner_id, partner.status.value.lower(), operation)

    def _join_plan(
        self, partner: Partner, tier: Tier, key_id: str, old_key: str | None, now: float
    ) -> tuple[int | None, CarriedLedger]:
        """Attach the new key to the tier's plan with the old key's standing: requests left, tokens committed."""
        self._keys.attach_key(tier.plan_id, key_id)
        period = tier.limits.quota_period
        if period is None:
            return None, CarriedLedger()
        at = datetime.fromtimestamp(now, UTC)
        start, reset = period_bounds(period, at)
        carried = self._ledger.standing(partner.api_key_id, start)
        quota = tier.limits.quota_limit
        remaining = None
        if quota is not None:
            left, allowance = quota, quota
            if old_key is not None:
                try:
                    days = self._keys.key_usage(tier.plan_id, old_key, start.date(), at.date())
                except NotFound as exc:
                    # The old key went since the partner was read: another rotation or a revocation won.
                    raise TierChangeInProgress(retry_after_seconds=CONFLICT_RETRY_SECONDS) from exc
                if days:
                    left = days[-1].remaining
                    allowance = sum(day.used for day in days) + left  # an extension (UpdateUsage) raises it
            # GetUsage can lag the requests (30 min on AWS); the ledger counts them as they pass.
            remaining = max(0, min(left, allowance - carried.requests))
            self._keys.set_remaining_quota(tier.plan_id, key_id, remaining)
        consumed = max(0, quota - remaining) if quota is not None and remaining is not None else carried.requests
        self._ledger.start(key_id, start, reset, partner, carried=carried, carried_requests=consumed)
        return remaining, carried

    def _retire_now(self, retirement: Retirement) -> bool:
        try:
            self._keys.delete_key(retirement.api_key_id)
            self._records.drop_retirement(retirement)
        except Exception:
            # Recorded as due now: the sweep's next run deletes it.
            logger.exception("could not delete a rotated key at once", api_key_id=retirement.api_key_id)
            return False
        return True

    def _undo(self, issuing: Retirement) -> None:
        try:
            self._keys.delete_key(issuing.api_key_id)
            self._records.drop_retirement(issuing)
        except Exception:
            logger.exception(
                "could not undo a new key; the retired-key sweep deletes it", api_key_id=issuing.api_key_id
            )

    def _quietly_delete(self, key_id: str) -> None:
        try:
            self._keys.delete_key(key_id)
        except Exception:
            # The gap signup has too (README): a disabled key in no plan, tagged with the stack and partner.
            logger.exception("could not delete a new key nothing records", api_key_id=key_id)


@dataclass(frozen=True)
class SweepOutcome:
    found: int = 0
    deleted: int = 0
    failed: int = 0
    deferred: int = 0


class RetiredKeySweep:
    """Deletes the keys whose retirement is due: rotated keys after their grace, new keys of rotations that died."""

    def __init__(self, keys: KeyIssuer, records: RetiredKeys) -> None:
        self._keys = keys
        self._records = records

    def run(self, now: float, time_left: Callable[[], float], reserve_seconds: float) -> SweepOutcome:
        due = self._records.due_retirements(now)
        deleted = failed = 0
        for position, retirement in enumerate(due):
            if time_left() < reserve_seconds:
                return SweepOutcome(len(due), deleted, failed, deferred=len(due) - position)
            try:
                self._keys.delete_key(retirement.api_key_id)
                self._records.drop_retirement(retirement)
            except Exception as exc:
                failed += 1
                logger.warning("could not delete a retired key", api_key_id=retirement.api_key_id, error=str(exc))
                continue
            deleted += 1
            logger.info(
                "deleted a retired key",
                api_key_id=retirement.api_key_id,
                partner_id=retirement.partner_id,
                reason=retirement.reason,
            )
        return SweepOutcome(len(due), deleted, failed)
