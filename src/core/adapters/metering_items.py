"""The metering table's item layout, defined here only (docs/CONTRACTS.md, "Metering table"): one partition per
API key, `pk = KEY#<api key id>`, and per quota period the AI API's ledger (`sk = PERIOD#<period start>`), the
quota monitor's reading of API Gateway's quota (`QUOTA#<period start>`) and its alerts
(`ALERT#<period start>#<threshold>`). Three capabilities use the table; each has its own adapter over these keys.
One partition is not a key's: `pk = SWEEP#dormant-keys`, `sk = DAY#<UTC date>`, the quota monitor's claim on
the day's dormant-key sweep.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

from core.periods import period_key

LEDGER_PREFIX = "PERIOD#"
# A ledger item's per-slice counters for charts (core.periods.usage_bucket): `requests_at_<YYYYMMDDHH>` and
# `tokens_at_<YYYYMMDDHH>`, the slice's start hour (00 for a day's slice) in UTC.
BUCKET_REQUESTS_PREFIX = "requests_at_"
BUCKET_TOKENS_PREFIX = "tokens_at_"
_BUCKET_FORMAT = "%Y%m%d%H"
# A ledger item's standing carried from the key it replaced (core.key_rotation): `carried_tokens` (also counted in
# `committed_tokens`, so the reservation's one conditional write sees it), `carried_requests` (the quota the old
# key had consumed; not in `requests`, which counts this key's own) and the extensions granted this period.
CARRIED_TOKENS = "carried_tokens"
CARRIED_REQUESTS = "carried_requests"
EXTENSION_ATTRIBUTES = ("extension_tokens", "extension_requests")
# Sorts after every `PERIOD#<period start>`: the upper bound of a range over a key's ledger items.
LEDGER_LAST = f"{LEDGER_PREFIX}~"
_PERIOD_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def key_pk(api_key_id: str) -> str:
    return f"KEY#{api_key_id}"


def api_key_id_of(pk: str) -> str | None:
    """The API key id of a key's partition key (`KEY#<id>`); None for another partition."""
    prefix = key_pk("")
    return pk.removeprefix(prefix) if pk.startswith(prefix) and len(pk) > len(prefix) else None


def ledger_sk(period_start: datetime) -> str:
    return f"{LEDGER_PREFIX}{period_key(period_start)}"


def reading_sk(period_start: datetime) -> str:
    return f"QUOTA#{period_key(period_start)}"


def alert_sk(period_start: datetime, threshold: int) -> str:
    return f"ALERT#{period_key(period_start)}#{threshold}"


def bucket_requests_attribute(bucket_start: datetime) -> str:
    return f"{BUCKET_REQUESTS_PREFIX}{bucket_start.astimezone(UTC).strftime(_BUCKET_FORMAT)}"


def bucket_tokens_attribute(bucket_start: datetime) -> str:
    return f"{BUCKET_TOKENS_PREFIX}{bucket_start.astimezone(UTC).strftime(_BUCKET_FORMAT)}"


def bucket_start(attribute: str) -> tuple[str, datetime] | None:
    """("requests" | "tokens", the slice's start) of a per-slice counter's name; None for another attribute."""
    for kind, prefix in (("requests", BUCKET_REQUESTS_PREFIX), ("tokens", BUCKET_TOKENS_PREFIX)):
        if attribute.startswith(prefix):
            try:
                return kind, datetime.strptime(attribute.removeprefix(prefix), _BUCKET_FORMAT).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


# A ledger item's tokens by model: `prompt_tokens@<model id>` and `completion_tokens@<model id>` (N), added in the
# UpdateItem that settles a completion or embeddings call. Model ids contain dots, colons and dashes
# (`anthropic.claude-3-haiku-20240307-v1:0`), so these names are only ever written through
# ExpressionAttributeNames; `@` appears in no model id and in no other attribute's name.
MODEL_TOKENS_SEPARATOR = "@"
TokenKind = Literal["prompt", "completion"]
_TOKEN_KINDS: tuple[TokenKind, ...] = ("prompt", "completion")


def model_tokens_attribute(kind: TokenKind, model: str) -> str:
    """The ledger attribute counting `kind` tokens of `model`: `prompt_tokens@<model>` / `completion_tokens@<model>`."""
    return f"{kind}_tokens{MODEL_TOKENS_SEPARATOR}{model}"


def model_tokens_of(attribute: str) -> tuple[TokenKind, str] | None:
    """(kind, model id) of a by-model token counter's name; None for any other attribute."""
    for kind in _TOKEN_KINDS:
        prefix = f"{kind}_tokens{MODEL_TOKENS_SEPARATOR}"
        if attribute.startswith(prefix) and len(attribute) > len(prefix):
            return kind, attribute.removeprefix(prefix)
    return None


def tokens_by_model(item: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """A ledger item's (plain values, deserialized) tokens by model:
    `{model id: {"prompt_tokens": n, "completion_tokens": m}}`, models sorted, both counters always present."""
    found: dict[str, dict[str, int]] = {}
    for name, value in item.items():
        parsed = model_tokens_of(name)
        if parsed is not None:
            kind, model = parsed
            counters = found.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
            counters[f"{kind}_tokens"] += int(value)
    return dict(sorted(found.items()))


def ledger_period_start(sk: str) -> datetime:
    """The period start a ledger item's sort key names."""
    return datetime.strptime(sk.removeprefix(LEDGER_PREFIX), _PERIOD_FORMAT).replace(tzinfo=UTC)


DORMANT_SWEEP_PK = "SWEEP#dormant-keys"


def sweep_day_sk(day: date) -> str:
    return f"DAY#{day.isoformat()}"
