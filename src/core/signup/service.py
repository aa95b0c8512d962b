"""Partner signup: issue an API key on a self-service tier and record the partner, all or nothing.

The steps, and why in this order:
1. lock the mailbox (a lease, so concurrent or crashed attempts cannot both issue keys);
2. create the key *disabled* (if we die now, nothing can call with it), and note its id on the lock at once;
3. attach it to the tier's usage plan, then enable it;
4. write the partner record and mark the mailbox taken, in one transaction.
Any failure deletes the key (API Gateway drops its plan membership with it) and releases the lock, so a
retry starts clean. When that undo cannot finish (the management API throttles it, or time runs out), the
lock keeps the key ids and its lease runs out: the next attempt for the same mailbox, or the scheduled
sweep (`SignupSweep`), deletes exactly those keys. Nobody ever lists the account's keys.

The whole signup runs inside a time budget below the function's timeout: management calls and botocore's
retries of them stop when they could not end in time, and the caller gets `503 throttled` with Retry-After.
"""

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer
from pydantic import SecretStr

from core.adapters.apigateway import ApiGateway, bound_by_deadline
from core.adapters.retired_keys import RetiredKeyRecords
from core.adapters.ses import SesEmail
from core.aws import (
    BUDGETED_ATTEMPT_SECONDS,
    BUDGETED_RETRY_CONFIG,
    SINGLE_ATTEMPT_CONFIG,
    apigateway_client,
    ses_client,
)
from core.errors import (
    ConfirmationLinkInvalid,
    IdempotencyKeyReused,
    IdempotentRequestInProgress,
    ManagementApiOutOfTime,
    ManagementApiThrottled,
    SignupThrottled,
    TierNotSelfService,
)
from core.key_rotation import RetiredKeySweep
from core.messages import Message
from core.models import IssuedKey, Partner, PartnerStatus, Tier
from core.observability import logger
from core.pacing import TokenBucket
from core.ports import EmailSender, UsagePlanGateway
from core.settings import load_settings
from core.signup.adapters.partners import SignupPartners
from core.signup.models import Reservation, SignedUpPartner, SignupRequest, SweepReport
from core.signup.ports import PartnerStore
from core.signup.settings import SignupSettings, SignupSweepSettings
from core.tiers import TierCatalog, key_name

IDEMPOTENCY_WINDOW_SECONDS = 600
KEY_PREFIX_LENGTH = 4
STACK_TAG = "metered-ai:stack"
PARTNER_TAG = "metered-ai:partner-id"
# The time budget: the answer must leave the function this long before its timeout...
RESPONSE_MARGIN_SECONDS = 1.0
# ...and a failed signup keeps this long to undo itself (one DeleteApiKey and one DeleteItem, with a retry).
UNDO_RESERVE_SECONDS = 5.0
# What a throttled caller is told to wait when its attempt left nothing behind.
THROTTLED_RETRY_AFTER_SECONDS = 5
# Mail providers that ignore dots and +tags in the local part (OneKeyPerMailbox), and their one domain.
DOT_BLIND_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


@dataclass(frozen=True)
class TimeBudget:
    """time.monotonic() instants: management calls of the signup itself end by `work_until`, its undo's by
    `undo_until`."""

    work_until: float
    undo_until: float

    @classmethod
    def from_remaining(cls, remaining_ms: int) -> "TimeBudget":
        undo_until = time.monotonic() + remaining_ms / 1000 - RESPONSE_MARGIN_SECONDS
        return cls(work_until=undo_until - UNDO_RESERVE_SECONDS, undo_until=undo_until)


# Per invocation (a context variable, so concurrent callers in one process never share one).
_budget: ContextVar[TimeBudget | None] = ContextVar("signup_budget", default=None)
_undoing: ContextVar[bool] = ContextVar("signup_undoing", default=False)


def management_deadline() -> float | None:
    """Until when the current signup's management calls may run (None: no budget, e.g. a script)."""
    budget = _budget.get()
    if budget is None:
        return None
    return budget.undo_until if _undoing.get() else budget.work_until


@contextmanager
def _phase(variable: ContextVar[Any], value: Any) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def mailbox_of(email: str, one_key_per_mailbox: bool) -> str:
    """The address that gets one key: the email itself, or (OneKeyPerMailbox) the mailbox it delivers to where
    the provider ignores dots and +tags (a.b+x@googlemail.com is ab@gmail.com)."""
    local, _, domain = email.rpartition("@")
    if not one_key_per_mailbox or domain not in DOT_BLIND_DOMAINS:
        return email
    return f"{local.split('+', 1)[0].replace('.', '')}@{DOT_BLIND_DOMAINS[domain]}"


class WithoutKeyValue(BaseIdempotencySerializer):
    """Stores a signup result in the idempotency table without the key value; a replay reads it back."""

    def to_dict(self, data: Any) -> dict[str, Any]:
        result: dict[str, Any] = data.model_dump(mode="json", exclude={"api_key"})
        return result

    def from_dict(self, data: dict[str, Any]) -> SignedUpPartner:
        return SignedUpPartner.model_validate(data)


class SignupService:
    def __init__(
        self,
        settings: SignupSettings,
        plans: UsagePlanGateway,
        partners: PartnerStore,
        idempotency_store: BasePersistenceLayer,
        *,
        clock: Callable[[], float] = time.time,
        email: EmailSender | None = None,
    ) -> None:
        self._settings = settings
        self._plans = plans
        self._partners = partners
        self._clock = clock
        self._email = email  # None: no sender configured, so no confirmation links (and no alert emails)
        self.tiers = TierCatalog(settings.stack_name, plans, settings.tier_cache_seconds)
        self.idempotency_config = IdempotencyConfig(
            event_key_jmespath="idempotency_key",
            payload_validation_jmespath="request",
            expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
        )
        self._sign_up_once = idempotent_function(
            data_keyword_argument="signup",
            persistence_store=idempotency_store,
            config=self.idempotency_config,
            output_serializer=WithoutKeyValue(),
        )(self._sign_up_from_record)

    def sign_up(
        self,
        request: SignupRequest,
        idempotency_key: str | None = None,
        remaining_ms: int | None = None,
        confirm_url: str | None = None,
    ) -> SignedUpPartner:
        """Sign a partner up. With an Idempotency-Key, a retry of the same request returns the same partner.
        With `remaining_ms` (the invocation's time left), every step ends in time or raises SignupThrottled.
        `confirm_url`: the public URL of GET /signup/confirm, for the link that confirms an alert address."""
        budget = TimeBudget.from_remaining(remaining_ms) if remaining_ms is not None else None
        with _phase(_budget, budget):
            if idempotency_key is None:
                return self._sign_up(request, confirm_url)
            try:
                result: SignedUpPartner = self._sign_up_once(
                    # Only idempotency_key is hashed, and only request is validated: the URL rides along.
                    signup={
                        "idempotency_key": idempotency_key,
                        "request": request.model_dump(mode="json"),
                        "confirm_url": confirm_url,
                    }
                )
            except IdempotencyValidationError as exc:
                raise IdempotencyKeyReused() from exc
            except IdempotencyAlreadyInProgressError as exc:
                raise IdempotentRequestInProgress() from exc
            if result.api_key is None:
                # A replay: the stored result has no key value by design; API Gateway still has it.
                try:
                    value = self._plans.read_key_value(result.api_key_id)
                except (ManagementApiThrottled, ManagementApiOutOfTime) as exc:
                    raise SignupThrottled(THROTTLED_RETRY_AFTER_SECONDS) from exc
                result = result.model_copy(update={"api_key": SecretStr(value)})
            return result

    def _sign_up_from_record(self, signup: dict[str, Any]) -> SignedUpPartner:
        return self._sign_up(SignupRequest.model_validate(signup["request"]), signup.get("confirm_url"))

    @property
    def double_opt_in(self) -> bool:
        return self._settings.double_opt_in

    def request_signup(self, request: SignupRequest, confirm_url: str) -> None:
        """Double opt-in: email the address a link that issues the key when opened. The same answer whether or
        not the address is registered or already has a link pending (which get no second email)."""
        try:
            self._self_service_tier(request.tier)  # a bad tier is refused now, not after the email
        except (ManagementApiThrottled, ManagementApiOutOfTime) as exc:
            raise SignupThrottled(THROTTLED_RETRY_AFTER_SECONDS) from exc
        mailbox = mailbox_of(request.email, self._settings.one_key_per_mailbox)
        if self._email is None or self._partners.is_registered(mailbox):
            return
        token = secrets.token_urlsafe(32)
        lifetime = self._settings.confirmation_link_seconds
        now = self._clock()
        if not self._partners.add_signup_request(
            _token_hash(token), mailbox, request.model_dump(mode="json"), now, int(now) + lifetime
        ):
            return
        try:
            self._email.send(request.email, signup_link_message(request.name, f"{confirm_url}?token={token}", lifetime))
        except Exception:
            self._partners.forget_signup_request(_token_hash(token), mailbox)  # so a retry may send it again
            raise
        logger.info("sent a signup link")

    def confirm(self, token: str, remaining_ms: int | None = None) -> SignedUpPartner | str:
        """Open a confirmation link: a double opt-in signup's result (the key, shown once), or the partner
        whose alert address is now confirmed."""
        token_hash = _token_hash(token)
        pending = self._partners.pending_signup(token_hash, self._clock())
        if pending is None:
            return self.confirm_email(token)
        request = SignupRequest.model_validate(pending)
        with _phase(_budget, TimeBudget.from_remaining(remaining_ms) if remaining_ms is not None else None):
            result = self._sign_up(request, confirmed=True)
        self._partners.forget_signup_request(token_hash, mailbox_of(request.email, self._settings.one_key_per_mailbox))
        return result

    def confirm_email(self, token: str) -> str:
        """Use a confirmation link's token: the partner whose address is now confirmed."""
        partner_id = self._partners.confirm_email(_token_hash(token), self._clock())
        if partner_id is None:
            raise ConfirmationLinkInvalid()
        logger.info("confirmed a partner's email address", partner_id=partner_id)
        return partner_id

    def _sign_up(
        self, request: SignupRequest, confirm_url: str | None = None, confirmed: bool = False
    ) -> SignedUpPartner:
        try:
            tier = self._self_service_tier(request.tier)
        except (ManagementApiThrottled, ManagementApiOutOfTime) as exc:  # reading the plans (cached afterwards)
            raise SignupThrottled(THROTTLED_RETRY_AFTER_SECONDS) from exc
        mailbox = mailbox_of(request.email, self._settings.one_key_per_mailbox)
        reservation = self._partners.reserve_email(
            mailbox, f"p_{uuid.uuid4().hex}", self._clock(), self._settings.signup_lease_seconds
        )
        # Keys that exist and must go if this attempt fails: a dead attempt's (taken over), then our own.
        outstanding = list(reservation.key_ids)
        try:
            self._delete_keys(outstanding)
            key = self._issue_key(mailbox, reservation, tier, outstanding)
            self._partners.activate(self._partner(request, reservation, tier, key, confirmed), mailbox)
        except Exception as exc:
            undone = self._undo(mailbox, reservation, outstanding)
            if isinstance(exc, ManagementApiThrottled | ManagementApiOutOfTime):
                raise SignupThrottled(self._retry_after(reservation, undone)) from exc
            raise
        logger.info("signed up partner", partner_id=reservation.partner_id, tier=tier.name, api_key_id=key.id)
        confirmation = None if confirmed else self._send_confirmation(request, reservation.partner_id, confirm_url)
        return SignedUpPartner(
            partner_id=reservation.partner_id,
            api_key=key.value,
            api_key_id=key.id,
            tier=tier.name,
            limits=tier.limits,
            email_confirmation=confirmation,
        )

    def _send_confirmation(
        self, request: SignupRequest, partner_id: str, confirm_url: str | None
    ) -> Literal["sent", "unavailable"] | None:
        """Email the link that confirms the alert address. Best effort: the partner is signed up either way,
        and gets no alert email until the link is opened."""
        if not request.alert_emails:
            return None
        budget = _budget.get()
        short_of_time = budget is not None and time.monotonic() + BUDGETED_ATTEMPT_SECONDS > budget.undo_until
        if self._email is None or confirm_url is None or short_of_time:
            return "unavailable"
        token = secrets.token_urlsafe(32)
        lifetime = self._settings.confirmation_link_seconds
        try:
            self._partners.add_confirmation(_token_hash(token), partner_id, int(self._clock()) + lifetime)
            self._email.send(
                request.email, confirmation_message(request.name, f"{confirm_url}?token={token}", lifetime)
            )
        except Exception as exc:
            logger.warning("could not send the confirmation link", partner_id=partner_id, error=str(exc))
            return "unavailable"
        return "sent"

    def _self_service_tier(self, requested: str | None) -> Tier:
        allowed = list(self._settings.self_service_tiers)
        name = requested or allowed[0]
        tier = self.tiers.get(name)
        if name not in allowed:
            raise TierNotSelfService(name, allowed)
        return tier

    def _issue_key(self, mailbox: str, reservation: Reservation, tier: Tier, outstanding: list[str]) -> IssuedKey:
        partner_id = reservation.partner_id
        key = self._plans.create_disabled_key(
            key_name(self._settings.stack_name, partner_id),
            tags={STACK_TAG: self._settings.stack_name, PARTNER_TAG: partner_id},
        )
        outstanding.append(key.id)
        self._partners.record_key(mailbox, reservation, key.id)
        self._plans.attach_key(tier.plan_id, key.id)
        self._plans.enable_key(key.id)
        return key

    def _partner(
        self, request: SignupRequest, reservation: Reservation, tier: Tier, key: IssuedKey, confirmed: bool
    ) -> Partner:
        now = datetime.fromtimestamp(self._clock(), UTC).isoformat()
        return Partner(
            partner_id=reservation.partner_id,
            name=request.name,
            email=request.email,
            tier=tier.name,
            api_key_id=key.id,
            key_prefix=key.value.get_secret_value()[:KEY_PREFIX_LENGTH],
            status=PartnerStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            alert_emails=request.alert_emails,
            email_confirmed=confirmed,
        )

    def _delete_keys(self, outstanding: list[str]) -> None:
        while outstanding:
            self._plans.delete_key(outstanding[0])
            outstanding.pop(0)

    def _undo(self, mailbox: str, reservation: Reservation, outstanding: list[str]) -> bool:
        """Delete the attempt's keys, then release the mailbox; whether that finished. Released only once the
        keys are gone: a released lock with a live key would be a key without a record. Otherwise the lock
        keeps the key ids, and a retry after the lease or the sweep finishes the job."""
        with _phase(_undoing, True):
            try:
                self._delete_keys(outstanding)
                self._partners.release(mailbox, reservation)
            except Exception as exc:
                logger.warning(
                    "could not undo a failed signup; the sweep or a retry after the lease finishes it",
                    partner_id=reservation.partner_id,
                    api_key_ids=outstanding,
                    lease_until=reservation.lease_until,
                    error=str(exc),
                )
                return False
        return True

    def _retry_after(self, reservation: Reservation, undone: bool) -> int:
        if undone:
            return THROTTLED_RETRY_AFTER_SECONDS
        # The lock stays until its lease runs out: a retry before then would get 409 signup_in_progress.
        return max(THROTTLED_RETRY_AFTER_SECONDS, reservation.lease_until - int(self._clock()) + 1)


def _token_hash(token: str) -> str:
    # Only the hash is stored: a table reader cannot confirm an address it does not own.
    return hashlib.sha256(token.encode()).hexdigest()


def confirmation_message(name: str, link: str, lifetime_seconds: int) -> Message:
    days = max(1, lifetime_seconds // 86400)
    body = (
        f"Hello {name},\n\n"
        "You signed up for an API key and asked for quota alert emails at this address. Open this link to "
        f"confirm that the address is yours (it works once, for {days} day{'s' if days > 1 else ''}):\n\n"
        f"{link}\n\n"
        "Until then we send no alert emails here. If you did not sign up, ignore this email: you will get "
        "nothing more from us.\n"
    )
    return Message(subject="Confirm your email address for alerts", body=body, attributes={})


def signup_link_message(name: str, link: str, lifetime_seconds: int) -> Message:
    days = max(1, lifetime_seconds // 86400)
    body = (
        f"Hello {name},\n\n"
        "Someone, we hope you, asked for an API key for this address. Open this link to get it (the page shows "
        f"the key once; the link works once, for {days} day{'s' if days > 1 else ''}):\n\n"
        f"{link}\n\n"
        "If you did not ask, ignore this email: no key is issued and you will get nothing more from us.\n"
    )
    return Message(subject="Confirm your email address to get your API key", body=body, attributes={})


class SignupSweep:
    """Finishes what failed signups could not undo: for each mailbox lock whose lease ran out while still
    PENDING, deletes the keys it lists, then the lock. Run on a schedule (SignupSweepFunction)."""

    def __init__(
        self,
        plans: UsagePlanGateway,
        partners: PartnerStore,
        retired_keys: RetiredKeySweep | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._plans = plans
        self._partners = partners
        self._retired_keys = retired_keys
        self._clock = clock

    def run(self, time_left: Callable[[], float], reserve_seconds: float, as_of: float | None = None) -> SweepReport:
        """Sweep failed signups, then the retired keys due by `as_of` (the schedule's time; default now): the
        keys key rotations replaced, after their grace, and the new keys of rotations that died."""
        report = self._sweep_signups(time_left, reserve_seconds)
        if self._retired_keys is None:
            return report
        retired = self._retired_keys.run(self._clock() if as_of is None else as_of, time_left, reserve_seconds)
        return report.model_copy(
            update={
                "retired_found": retired.found,
                "retired_deleted": retired.deleted,
                "retired_failed": retired.failed,
                "deferred": report.deferred + retired.deferred,
            }
        )

    def _sweep_signups(self, time_left: Callable[[], float], reserve_seconds: float) -> SweepReport:
        locks = self._partners.expired_locks(self._clock())
        cleaned = failed = deferred = 0
        for lock in locks:
            if time_left() < reserve_seconds:
                deferred += 1  # the next run finishes them
                continue
            try:
                for key_id in lock.key_ids:
                    self._plans.delete_key(key_id)
                if self._partners.drop_expired_lock(lock):
                    cleaned += 1
                    logger.info("swept a failed signup", partner_id=lock.partner_id, api_key_ids=list(lock.key_ids))
            except Exception as exc:
                failed += 1
                logger.warning("could not sweep a failed signup", partner_id=lock.partner_id, error=str(exc))
        return SweepReport(found=len(locks), cleaned=cleaned, failed=failed, deferred=deferred)


@cache
def signup_service() -> SignupService:
    settings = load_settings(SignupSettings)
    client = apigateway_client(BUDGETED_RETRY_CONFIG)
    bound_by_deadline(client, management_deadline, BUDGETED_ATTEMPT_SECONDS)
    sender = settings.partner_alert_sender
    return SignupService(
        settings,
        plans=ApiGateway(client),
        partners=SignupPartners(settings.partners_table),
        idempotency_store=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        email=SesEmail(sender, ses_client(SINGLE_ATTEMPT_CONFIG)) if sender else None,
    )


@cache
def signup_sweep() -> SignupSweep:
    settings: SignupSweepSettings = load_settings(SignupSweepSettings)
    # DeleteApiKey: 5 requests/s per account, inside the account's 10/s: the sweep takes a small share.
    pacer = TokenBucket(settings.sweep_calls_per_second, 1)
    gateway = ApiGateway(pacer=pacer)
    return SignupSweep(
        plans=gateway,
        partners=SignupPartners(settings.partners_table),
        retired_keys=RetiredKeySweep(gateway, RetiredKeyRecords(settings.partners_table)),
    )
