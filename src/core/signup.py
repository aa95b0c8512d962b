"""Partner signup: issue an API key on a self-service tier and record the partner, all or nothing.

The steps, and why in this order:
1. lock the email (a lease, so concurrent or crashed attempts cannot both issue keys);
2. create the key *disabled* (if we die now, nothing can call with it);
3. attach it to the tier's usage plan, then enable it;
4. write the partner record and mark the email taken, in one transaction.
Any failure deletes the key (API Gateway drops its plan membership with it) and releases the lock, so a
retry starts clean. If the function dies mid-way (timeout), the lock's lease expires and the next attempt
for the same email takes over the same partner id and deletes whatever keys the dead attempt left.
"""

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

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

from core.adapters.apigateway import ApiGateway
from core.adapters.dynamodb import PartnersTable
from core.config import SignupSettings, signup_settings
from core.errors import IdempotencyKeyReused, IdempotentRequestInProgress, TierNotSelfService
from core.models import IssuedKey, Partner, PartnerStatus, Reservation, SignedUpPartner, SignupRequest, Tier
from core.observability import logger
from core.ports import PartnerStore, UsagePlanGateway
from core.tiers import TierCatalog, key_name

IDEMPOTENCY_WINDOW_SECONDS = 600
KEY_PREFIX_LENGTH = 4
STACK_TAG = "metered-ai:stack"
PARTNER_TAG = "metered-ai:partner-id"


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._plans = plans
        self._partners = partners
        self._clock = clock
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

    def sign_up(self, request: SignupRequest, idempotency_key: str | None = None) -> SignedUpPartner:
        """Sign a partner up. With an Idempotency-Key, a retry of the same request returns the same partner."""
        if idempotency_key is None:
            return self._sign_up(request)
        try:
            result: SignedUpPartner = self._sign_up_once(
                signup={"idempotency_key": idempotency_key, "request": request.model_dump(mode="json")}
            )
        except IdempotencyValidationError as exc:
            raise IdempotencyKeyReused() from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise IdempotentRequestInProgress() from exc
        if result.api_key is None:
            # A replay: the stored result has no key value by design; API Gateway still has it.
            result = result.model_copy(update={"api_key": SecretStr(self._plans.read_key_value(result.api_key_id))})
        return result

    def _sign_up_from_record(self, signup: dict[str, Any]) -> SignedUpPartner:
        return self._sign_up(SignupRequest.model_validate(signup["request"]))

    def _sign_up(self, request: SignupRequest) -> SignedUpPartner:
        tier = self._self_service_tier(request.tier)
        reservation = self._partners.reserve_email(
            request.email, f"p_{uuid.uuid4().hex}", self._clock(), self._settings.signup_lease_seconds
        )
        name = key_name(self._settings.stack_name, reservation.partner_id)
        try:
            if reservation.resumed:
                self._delete_keys(name)
            key = self._issue_key(name, reservation.partner_id, tier)
            self._partners.activate(self._partner(request, reservation, tier, key))
        except Exception:
            self._undo(request.email, reservation, name)
            raise
        logger.info("signed up partner", partner_id=reservation.partner_id, tier=tier.name, api_key_id=key.id)
        return SignedUpPartner(
            partner_id=reservation.partner_id, api_key=key.value, api_key_id=key.id, tier=tier.name, limits=tier.limits
        )

    def _self_service_tier(self, requested: str | None) -> Tier:
        allowed = list(self._settings.self_service_tiers)
        name = requested or allowed[0]
        tier = self.tiers.get(name)
        if name not in allowed:
            raise TierNotSelfService(name, allowed)
        return tier

    def _issue_key(self, name: str, partner_id: str, tier: Tier) -> IssuedKey:
        key = self._plans.create_disabled_key(
            name, tags={STACK_TAG: self._settings.stack_name, PARTNER_TAG: partner_id}
        )
        self._plans.attach_key(tier.plan_id, key.id)
        self._plans.enable_key(key.id)
        return key

    def _partner(self, request: SignupRequest, reservation: Reservation, tier: Tier, key: IssuedKey) -> Partner:
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
        )

    def _delete_keys(self, name: str) -> None:
        for key_id in self._plans.find_key_ids(name):
            self._plans.delete_key(key_id)

    def _undo(self, email: str, reservation: Reservation, name: str) -> None:
        # Release the email only once the keys are gone: a released lock with a live key would be a key
        # without a record. If cleanup fails, the lease expires and the next attempt finishes the job.
        try:
            self._delete_keys(name)
            self._partners.release(email, reservation)
        except Exception:
            logger.exception(
                "could not undo a failed signup; a retry after the lease cleans up", partner_id=reservation.partner_id
            )


@cache
def signup_service() -> SignupService:
    settings = signup_settings()
    return SignupService(
        settings,
        plans=ApiGateway(),
        partners=PartnersTable(settings.partners_table),
        idempotency_store=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
    )
