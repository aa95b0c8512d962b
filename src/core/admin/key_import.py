"""POST /admin/keys/import: partners who already hold keys from another system, one per CSV row, each on its
tier's plan with its own key value.

The body is API Gateway's API key file format (`key,name,description,enabled,usageplanIds`, header names in any
case and order, unknown columns ignored) plus `email` and `tier`. Each row is enrolled like a signup (the
kernel's PartnerEnrolment): its mailbox is locked, the key is created *disabled* with the row's value and the
stack's tags, its id noted on the lock at once, then it is attached to the tier's plan and enabled, and the
partner record, its key index and the taken mailbox are written in one transaction. A row that fails is undone
(its key deleted, its lock released) and reported; if the undo cannot finish, the lock keeps the key's id and
signup's sweep deletes it once the lease runs out: no key is ever left without a record. Rows are independent:
the good ones are imported, the bad ones change nothing.

CreateApiKey with `value`, not ImportApiKeys (docs/decisions.md): ImportApiKeys overwrites a key that has the
same value (another partner's), cannot tag keys (the console's IAM allows changing only tagged keys) and
answers for the whole file, not per row. No key value is ever logged, stored or answered: only the key's id and
its first 4 characters.
"""

import csv
import io
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import SecretStr

from core.admin.ports import EnrolmentStore, KeyCreator
from core.errors import (
    ApiKeyCeilingReached,
    EmailAlreadyRegistered,
    InvalidRequest,
    KeyValueInUse,
    PayloadTooLarge,
    SignupInProgress,
)
from core.mailbox import mailbox_of
from core.models import CONTROL_CHARACTERS, Partner, PartnerStatus, Reservation, Tier
from core.observability import logger
from core.tiers import KEY_PREFIX_LENGTH, PARTNER_TAG, STACK_TAG, key_name

# API Gateway's payload limit is 10 MB; an import is a batch of partners, not a bulk load (the CLI sends 20
# rows a request): 1 MiB and 500 rows keep one call far inside the function's and API Gateway's 29 s.
MAX_IMPORT_BYTES = 1024 * 1024
MAX_IMPORT_ROWS = 500
MAX_FIELD_CHARS = 2048  # a Name may have 1024 characters (API Gateway); anything longer is hostile
# API Gateway's key values: 20 to 128 characters; we also refuse whitespace and non-ASCII, which no gateway
# header carries intact.
KEY_VALUE = re.compile(r"[\x21-\x7e]{20,128}")
REQUIRED_COLUMNS = ("key", "name", "email", "tier")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "description", "enabled", "usageplanids")
LOCK_LEASE_SECONDS = 60


@dataclass(frozen=True)
class ImportedRow:
    row: int
    partner_id: str
    email: str
    tier: str
    api_key_id: str
    key_prefix: str


@dataclass(frozen=True)
class RejectedRow:
    row: int
    code: str
    reason: str
    email: str | None = None


@dataclass
class ImportReport:
    imported: list[ImportedRow]
    rejected: list[RejectedRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": [vars(row) for row in self.imported],
            "rejected": [
                {name: value for name, value in vars(row).items() if value is not None} for row in self.rejected
            ],
        }


@dataclass(frozen=True)
class _Row:
    number: int
    name: str
    email: str
    tier: Tier
    value: SecretStr


class _Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class KeyImporter:
    def __init__(
        self,
        *,
        stack_name: str,
        tiers: Callable[[], dict[str, Tier]],
        partners: EnrolmentStore,
        keys: KeyCreator,
        one_key_per_mailbox: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stack = stack_name
        self._tiers = tiers
        self._partners = partners
        self._keys = keys
        self._one_key_per_mailbox = one_key_per_mailbox
        self._clock = clock

    def run(self, body: bytes) -> ImportReport:
        """Import every good row of `body`; ApiKeyCeilingReached (503) when the ceiling refused the first key."""
        table = read_table(body)
        report = ImportReport([], [])
        rows: list[_Row] = []
        seen_emails: set[str] = set()
        seen_values: set[str] = set()
        tiers = self._tiers()
        for number, cells, problem in table:
            try:
                if problem is not None:
                    raise _Refused("invalid_row", problem)
                row = self._checked(number, cells, tiers)
                mailbox = mailbox_of(row.email, self._one_key_per_mailbox)
                if mailbox in seen_emails:
                    raise _Refused("duplicate_email", "the same email (mailbox) is on an earlier row of this file")
                if row.value.get_secret_value() in seen_values:
                    raise _Refused("key_in_use", "the same key value is on an earlier row of this file")
                seen_emails.add(mailbox)
                seen_values.add(row.value.get_secret_value())
                rows.append(row)
            except _Refused as refused:
                report.rejected.append(RejectedRow(number, refused.code, refused.reason, _email_of(cells)))
        at_ceiling = False
        for row in rows:
            if at_ceiling:
                report.rejected.append(RejectedRow(row.number, "capacity_exhausted", CEILING_REASON, row.email))
                continue
            try:
                report.imported.append(self._enrol(row))
            except _Refused as refused:
                report.rejected.append(RejectedRow(row.number, refused.code, refused.reason, row.email))
            except ApiKeyCeilingReached:
                if not report.imported:
                    raise
                at_ceiling = True
                report.rejected.append(RejectedRow(row.number, "capacity_exhausted", CEILING_REASON, row.email))
        report.rejected.sort(key=lambda rejected: rejected.row)
        return report

    def _checked(self, number: int, cells: dict[str, str], tiers: dict[str, Tier]) -> _Row:
        for column, text in cells.items():
            if CONTROL_CHARACTERS.search(text):
                raise _Refused("invalid_row", f"{column} contains control characters")
        name = cells.get("name", "").strip()
        if not 1 <= len(name) <= 200:
            raise _Refused("invalid_row", "name must have 1 to 200 characters")
        try:
            email = validate_email(cells.get("email", "").strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            raise _Refused("invalid_email", "email is not a valid address") from None
        if len(email) > 254:
            raise _Refused("invalid_email", "email is longer than 254 characters")
        tier = tiers.get(cells.get("tier", "").strip())
        if tier is None:
            raise _Refused("unknown_tier", f"tier must be one of {', '.join(sorted(tiers))}")
        value = cells.get("key", "")
        if not KEY_VALUE.fullmatch(value):
            raise _Refused(
                "invalid_key", "key must be 20 to 128 printable ASCII characters without spaces (API Gateway)"
            )
        if cells.get("enabled", "").strip().lower() not in ("", "true"):
            raise _Refused("invalid_row", "enabled must be true or empty: only keys in use are imported")
        plans = [plan.strip(" '\"") for plan in cells.get("usageplanids", "").split(",") if plan.strip(" '\"")]
        if plans and plans != [tier.plan_id]:
            raise _Refused("invalid_row", "usageplanIds must be empty or the tier's own plan: the tier decides it")
        return _Row(number, name, email, tier, SecretStr(value))

    def _enrol(self, row: _Row) -> ImportedRow:
        mailbox = mailbox_of(row.email, self._one_key_per_mailbox)
        partner_id = f"p_{uuid.uuid4().hex}"
        try:
            reservation = self._partners.reserve_email(mailbox, partner_id, self._clock(), LOCK_LEASE_SECONDS)
        except (EmailAlreadyRegistered, SignupInProgress):
            raise _Refused("duplicate_email", "a partner with this email (mailbox) exists or is signing up") from None
        if reservation.resumed:
            # A dead attempt's lock (a signup or an import killed mid-way) whose lease ran out: its keys go first,
            # as signup's takeover does; if that fails the lock keeps naming them for the sweep.
            try:
                for dead in reservation.key_ids:
                    self._keys.delete_key(dead)
                    self._partners.forget_key(mailbox, reservation.partner_id, dead)
            except Exception as exc:
                logger.exception("could not delete a dead attempt's key", partner_id=reservation.partner_id)
                raise _Refused("failed", f"{type(exc).__name__}: nothing was kept; import this row again") from None
            partner_id = reservation.partner_id
        created: list[str] = []
        try:
            key_id = self._keys.create_disabled_key_with_value(
                key_name(self._stack, partner_id), {STACK_TAG: self._stack, PARTNER_TAG: partner_id}, row.value
            )
            created.append(key_id)
            self._partners.record_key(mailbox, reservation, key_id)
            self._keys.attach_key(row.tier.plan_id, key_id)
            self._keys.enable_key(key_id)
            now = datetime.fromtimestamp(self._clock(), UTC).isoformat()
            partner = Partner(
                partner_id=partner_id,
                name=row.name,
                email=row.email,
                tier=row.tier.name,
                api_key_id=key_id,
                key_prefix=row.value.get_secret_value()[:KEY_PREFIX_LENGTH],
                status=PartnerStatus.ACTIVE,
                created_at=now,
                updated_at=now,
            )
            self._partners.activate(partner, mailbox)
        except KeyValueInUse:
            self._release(mailbox, reservation, created)
            raise _Refused("key_in_use", "another API key of the account has this value") from None
        except Exception as exc:
            self._release(mailbox, reservation, created)
            if isinstance(exc, ApiKeyCeilingReached):
                raise
            logger.exception("could not import a row", row=row.number, partner_id=partner_id)
            raise _Refused("failed", f"{type(exc).__name__}: nothing was kept; import this row again") from None
        logger.info("imported a partner", row=row.number, partner_id=partner_id, tier=row.tier.name, api_key_id=key_id)
        return ImportedRow(
            row.number, partner_id, row.email, row.tier.name, key_id, row.value.get_secret_value()[:KEY_PREFIX_LENGTH]
        )

    def _release(self, mailbox: str, reservation: Reservation, created: list[str]) -> None:
        """Undo a row: delete its key, then drop its lock. A failed undo leaves the lock naming the key, which
        signup's sweep deletes once the lease has run out."""
        try:
            for key_id in created:
                self._keys.delete_key(key_id)
                self._partners.forget_key(mailbox, reservation.partner_id, key_id)
            self._partners.release(mailbox, reservation)
        except Exception:
            logger.exception(
                "could not undo an import row; the sweep deletes its key", partner_id=reservation.partner_id
            )


CEILING_REASON = "API Gateway's 10,000-key ceiling of the account and Region is reached: nothing was created"


def _email_of(cells: dict[str, str]) -> str | None:
    email = cells.get("email", "").strip()
    return email[:254] if email and not CONTROL_CHARACTERS.search(email) else None


def _text(body: bytes) -> str:
    if len(body) > MAX_IMPORT_BYTES:
        raise PayloadTooLarge(MAX_IMPORT_BYTES)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the CSV must be UTF-8") from None
    if "\x00" in text:
        raise InvalidRequest("the CSV contains NUL characters")
    return text


def read_table(body: bytes) -> list[tuple[int, dict[str, str], str | None]]:
    """The CSV's data rows as (number from 1 = the row after the header, {lower-cased column: cell}, what is
    wrong with the row's shape or None); 413 above MAX_IMPORT_BYTES, 400 above MAX_IMPORT_ROWS or for a body
    that is not UTF-8 CSV with the required columns (nothing is imported then)."""
    text = _text(body)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [column.strip().lower() for column in next(reader, [])]
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise InvalidRequest(
                "the CSV's header must name the columns key, name, email and tier (API Gateway's key file format "
                "plus email and tier)",
                [{"field": column, "message": "missing column"} for column in missing],
            )
        if len(set(header)) != len(header):
            raise InvalidRequest("the CSV's header names a column twice")
        rows: list[tuple[int, dict[str, str], str | None]] = []
        for cells in reader:
            if not cells:  # a blank line (the CLI's batches skip them too, so row numbers agree)
                continue
            if len(rows) == MAX_IMPORT_ROWS:
                raise InvalidRequest(f"an import has at most {MAX_IMPORT_ROWS} rows; send the rest in another call")
            number = len(rows) + 1
            if len(cells) != len(header):
                rows.append((number, {}, f"the row has {len(cells)} cells, the header {len(header)}"))
            elif any(len(cell) > MAX_FIELD_CHARS for cell in cells):
                rows.append((number, {}, f"a cell is longer than {MAX_FIELD_CHARS} characters"))
            else:
                known = {column: cell for column, cell in zip(header, cells, strict=True) if column in KNOWN_COLUMNS}
                rows.append((number, known, None))
    except csv.Error as exc:
        raise InvalidRequest(f"the CSV cannot be read: {exc}") from None
    if not rows:
        raise InvalidRequest("the CSV has no rows below its header")
    return rows
