"""Lost-key recovery (the partner portal): a partner who lost its key enters its signup email; if a partner has
it, a single-use link valid 15 minutes is emailed (from PartnerAlertSender); opening it re-issues the key with
the kernel's rotation (core.key_rotation, no grace: the lost key stops working at once) and shows the new key once.

Nothing tells a caller whether an address is registered: the request's answer is the same (202, same body) for
any valid address, and comes no sooner than `answer_floor_seconds` after the request arrived, whatever was done,
so its timing does not tell either. Requests are limited per source address (429 past it: that says nothing of
the email) and per email (past it, the same 202 and no email). Link tokens are stored only as SHA-256 hashes,
with a TTL, and are claimed by a conditional delete: one use. A recovery is recorded in the partner's audit trail
(the operator console's `AUDIT#` items, action `recover-key`), so an operator sees why the key changed.
"""

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from pydantic import SecretStr

from core.adapters.apigateway import ApiGateway
from core.adapters.audit_trail import AuditTrail
from core.adapters.ses import SesEmail
from core.aws import SINGLE_ATTEMPT_CONFIG, ses_client
from core.errors import PartnerNotActive, RecoveryLinkInvalid, RecoveryRateLimited, RecoveryUnavailable
from core.key_rotation import KeyRotation, RotatedKey
from core.key_rotation_on_aws import key_rotation_on_aws
from core.messages import Message
from core.models import AuditEntry, Partner, PartnerStatus
from core.observability import logger
from core.portal.adapters.recovery import RecoveryTable
from core.portal.ports import ClaimedLink, RecoveryRecords
from core.portal.settings import KeyRecoverySettings
from core.ports import AuditLog, EmailSender
from core.settings import load_settings

# Who may recover: a partner with a key, or whose key an operator revoked or the dormant sweep deleted (a
# re-issue). A suspended or billing-cancelled partner gets no link (and the same answer).
RECOVERABLE = frozenset({PartnerStatus.ACTIVE, PartnerStatus.REVOKED, PartnerStatus.DORMANT})
# The audit entry's actor: the partner itself, through the portal (an operator's is its IAM principal ARN).
RECOVERY_ACTOR = "partner:portal-key-recovery"


@dataclass(frozen=True)
class RecoveryLimits:
    link_seconds: int = 900
    per_email_per_hour: int = 3
    per_source_per_hour: int = 10
    answer_floor_seconds: float = 1.0


@dataclass(frozen=True)
class RecoveredKey:
    partner_id: str
    api_key_id: str
    api_key: SecretStr  # shown once, never logged or stored


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def recovery_message(name: str, link: str, minutes: int) -> Message:
    body = (
        f"Hello {name},\n\n"
        "Someone, we hope you, asked to recover the API key of this address. Open this link and press the button "
        f"to get a new key (the link works once, for {minutes} minutes; the old key stops working then):\n\n"
        f"{link}\n\n"
        "If you did not ask, ignore this email: nothing changes and your key keeps working.\n"
    )
    return Message(subject="Your API key recovery link", body=body, attributes={})


class KeyRecovery:
    def __init__(
        self,
        limits: RecoveryLimits,
        *,
        records: RecoveryRecords,
        email: EmailSender | None,
        rotation: KeyRotation,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limits = limits
        self._records = records
        self._email = email
        self._rotation = rotation
        self._audit = audit
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def available(self) -> bool:
        return self._email is not None

    def request_link(self, email: str, source: str, page_url: str) -> None:
        """Email a recovery link to `email` if a partner who may recover has it; the same outcome for the caller
        either way. RecoveryRateLimited (429) past the source's limit."""
        if self._email is None:
            raise RecoveryUnavailable()
        started = self._monotonic()
        now = self._clock()
        if not self._records.count_request("source", source, now, self._limits.per_source_per_hour):
            raise RecoveryRateLimited(retry_after_seconds=3600 - int(now) % 3600)
        try:
            self._send_link(email.strip().lower(), now, page_url)
        finally:
            # The same time for a registered address as for any other: the answer never comes sooner.
            self._sleep(max(0.0, started + self._limits.answer_floor_seconds - self._monotonic()))

    def _send_link(self, email: str, now: float, page_url: str) -> None:
        assert self._email is not None
        if not self._records.count_request("email", email, now, self._limits.per_email_per_hour):
            logger.info("recovery request over the address's limit; no email")
            return
        partner = self._records.partner_by_email(email)
        if partner is None or partner.status not in RECOVERABLE:
            logger.info("recovery request for no recoverable partner; no email")
            return
        token = secrets.token_urlsafe(32)
        self._records.add_link(token_hash(token), partner.partner_id, int(now) + self._limits.link_seconds)
        message = recovery_message(partner.name, f"{page_url}#recover={token}", self._limits.link_seconds // 60)
        try:
            self._email.send(partner.email, message)
        except Exception:
            # The same answer: the partner may ask again. Never the token in a log.
            logger.exception("could not email a recovery link", partner_id=partner.partner_id)
            return
        logger.info("emailed a recovery link", partner_id=partner.partner_id)

    def recover(self, token: str) -> RecoveredKey:
        """Use the link's token once: a new key (the lost one is deleted at once), or RecoveryLinkInvalid (404)."""
        hashed = token_hash(token)
        link = self._records.claim_link(hashed, self._clock()) if token else None
        partner: Partner | None = self._records.partner(link.partner_id) if link else None
        if link is None or partner is None:
            raise RecoveryLinkInvalid()
        try:
            rotated = self._rotation.rotate(partner, 0, "key recovery")
        except PartnerNotActive as exc:
            raise RecoveryLinkInvalid() from exc  # suspended or cancelled since the link was sent
        except Exception:
            # The rotation changed nothing (the partner keeps its key until its last step): the link goes back
            # as it was, so the partner can press the button again instead of asking for a new one.
            self._put_back(hashed, link)
            raise
        logger.info("recovered a key", partner_id=partner.partner_id, api_key_id=rotated.key.id)
        self._record(rotated)
        return RecoveredKey(partner_id=partner.partner_id, api_key_id=rotated.key.id, api_key=rotated.key.value)

    def _put_back(self, hashed: str, link: ClaimedLink) -> None:
        try:
            self._records.add_link(hashed, link.partner_id, link.expires_at)
        except Exception:
            logger.exception("could not put back a recovery link after a failed re-issue", partner_id=link.partner_id)

    def _record(self, rotated: RotatedKey) -> None:
        """The audit entry of a recovery that happened. Its failure is logged, never answered: the partner's new
        key is already in place and this answer is the only time it can be shown."""
        entry = AuditEntry(
            partner_id=rotated.partner.partner_id,
            seq=0,
            at=datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds"),
            actor=RECOVERY_ACTOR,
            action="recover-key",
            reason="the partner opened an emailed recovery link",
            outcome="applied",
            details={"grace_seconds": 0, **rotated.details},
        )
        try:
            self._audit.begin(entry)
        except Exception:
            logger.exception("could not record a key recovery in the audit trail", partner_id=entry.partner_id)


@cache
def key_recovery() -> KeyRecovery:
    settings = load_settings(KeyRecoverySettings)
    gateway = ApiGateway()
    sender = settings.partner_alert_sender
    return KeyRecovery(
        RecoveryLimits(
            link_seconds=settings.recovery_link_seconds,
            per_email_per_hour=settings.recovery_per_email_per_hour,
            per_source_per_hour=settings.recovery_per_source_per_hour,
            answer_floor_seconds=settings.recovery_answer_floor_seconds,
        ),
        records=RecoveryTable(settings.partners_table),
        email=SesEmail(sender, ses_client(SINGLE_ATTEMPT_CONFIG)) if sender else None,
        rotation=key_rotation_on_aws(
            settings.stack_name,
            gateway,
            partners_table=settings.partners_table,
            metering_table=settings.metering_table,
            tier_cache_seconds=settings.tier_cache_seconds,
        ),
        audit=AuditTrail(settings.partners_table),
    )
