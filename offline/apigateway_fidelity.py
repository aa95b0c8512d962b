"""AWS-documented API Gateway behaviour that moto 5 lacks, supplied once for mock_aws and ThreadedMotoServer.

`install()` patches moto so that, in both modes:
- GetUsage and UpdateUsage exist, answered from a per-backend `UsageLedger`;
- CreateUsagePlanKey refuses a second plan on the same API stage (ConflictException), DeleteUsagePlanKey
  and DeleteUsagePlan answer NotFoundException, and DeleteApiKey removes the key from its usage plans;
- management calls are throttled as AWS throttles them (429 TooManyRequestsException);
- the account holds at most 10,000 API keys (METERED_AI_OFFLINE_API_KEY_LIMIT, or `set_api_key_limit`, sets
  another ceiling): CreateApiKey past it answers 429 LimitExceededException naming API keys;
- ImportApiKeys exists (the API key file format, `ids` and `warnings`, failonwarnings all or nothing, a value
  imported again overwrites its key, new keys within the ceiling);
- GetUsage may lag: with METERED_AI_OFFLINE_USAGE_LAG_SECONDS (or `set_usage_lag`) above 0, it reports only
  requests older than the lag, while quotas keep applying in real time (off by default).
`ledger()` gives the local gateway and tests the usage ledger; `TokenBucket` (core.pacing) is the throttle
they share.

Facts and their sources (AWS docs unless noted):
- GetUsage: GET /usageplans/{id}/usage, dates are yyyy-MM-dd, `limit` defaults to 25 and is at most 500,
  the wire key of the per-key daily `[used, remaining]` arrays is "values" (boto3 renames it "items").
  The console export example ([0,5000],[0,5000],[0,10]: "hasn't used any allotted quotas yet, and the
  API owner ... has reduced the remaining quota from 5000 to 10 on the third day") shows that a key
  without traffic is listed with zeros and that UpdateUsage takes effect from the day it is made.
- "a given API key can only be associated with one usage plan for each stage of your API".
- Usage plans announcement (2016): quotas apply in real time, but "usage data can be up to 30 minutes
  behind"; how the lagging `remaining` of GetUsage is computed is not documented (here: the quota minus
  the reported requests, plus UpdateUsage grants).
- API keys: "Maximum number of API keys per account per Region: 10,000", not raisable (API Gateway quotas).
  Past a quota API Gateway answers LimitExceededException (HTTP 429, the same code as a rate limit); the one
  message observed is for resources ("Maximum number of Resources for this API has been reached. ...",
  hashicorp/terraform-provider-aws#37605): the key ceiling's message here follows it (core.adapters.apigateway
  tells the ceiling by a message that names API keys).
- Management quotas: CreateApiKey and DeleteApiKey 5 requests/s, UpdateUsagePlan 1 request every 20 s,
  and "Total operations: 10 requests per second with a burst quota of 40", which every call counts toward.
Choices where AWS documents nothing (change them here if AWS is observed to differ):
- a plan without a quota reports remaining 0 in GetUsage, and UpdateUsage on it is a BadRequestException;
- UpdateUsage answers with the key's usage from the start of the current quota period to today;
- the burst of the 5 requests/s buckets is 5, of the UpdateUsagePlan bucket 1;
- the ConflictException message wording.
"""

import base64
import binascii
import csv
import io
import json
import math
import os
import re
import threading
import time
import uuid
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import unquote

import moto
from moto.apigateway import urls as apigateway_urls
from moto.apigateway.exceptions import (
    ApiGatewayException,
    BadRequestException,
    ConflictException,
    NotFoundException,
)
from moto.apigateway.models import APIGatewayBackend, UsagePlan, apigateway_backends
from moto.apigateway.responses import APIGatewayResponse
from moto.core.common_types import TYPE_RESPONSE

# One token bucket for the limits emulated here, the local gateway's throttles and the functions' pacing.
from core.pacing import TokenBucket
from core.periods import QuotaPeriod, effective_limit, is_first_period, parse_quota_period, period_bounds

RATE_LIMITS_ENV: Final = "METERED_AI_OFFLINE_MGMT_RATE_LIMITS"
USAGE_LAG_ENV: Final = "METERED_AI_OFFLINE_USAGE_LAG_SECONDS"
API_KEY_LIMIT_ENV: Final = "METERED_AI_OFFLINE_API_KEY_LIMIT"
API_KEY_LIMIT: Final = 10_000
API_KEY_CEILING_MESSAGE: Final = "Maximum number of API Keys for this account has been reached."
GET_USAGE_DEFAULT_LIMIT: Final = 25
GET_USAGE_MAX_LIMIT: Final = 500

MonotonicClock = Callable[[], float]
WallClock = Callable[[], datetime]


@dataclass(frozen=True)
class ConsumeResult:
    """Outcome of one metered request: whether the quota let it through, and what is left of the period."""

    allowed: bool
    remaining: int | None  # left in the current period after this request; None when the plan has no quota
    resets_at: datetime | None  # start of the next quota period; None when the plan has no quota


class UsagePlanKeyNotFound(LookupError):
    """The usage plan does not exist, or the API key is not in it."""


@dataclass(frozen=True)
class _Quota:
    limit: int
    offset: int
    period: QuotaPeriod


class UsageLedger:
    """Requests per usage plan, API key and UTC day, plus UpdateUsage grants; the source of GetUsage.

    Plans and plan membership are read from the moto backend the ledger belongs to.
    """

    def __init__(self, backend: APIGatewayBackend) -> None:
        self._backend = backend
        self._lock = threading.RLock()
        self._daily: dict[tuple[str, str], dict[date, int]] = {}
        # UpdateUsage adjustments: (day made, requests added to that day's period; negative removes).
        self._grants: dict[tuple[str, str], list[tuple[date, int]]] = {}
        self._plan_created_at: dict[str, datetime] = {}
        # While GetUsage lags: requests recorded within the lag, (recorded at, day, n), not yet reported.
        self._unreported: dict[tuple[str, str], list[tuple[datetime, date, int]]] = {}

    def try_consume(self, plan_id: str, key_id: str, at: datetime) -> ConsumeResult:
        """Atomically check the key's quota for the period containing `at` and, if allowed, record one request."""
        self._require_member(plan_id, key_id)
        day = at.astimezone(UTC).date()
        with self._lock:
            quota = self._quota(plan_id)
            if quota is None:
                self.record(plan_id, key_id, day, at=at)
                return ConsumeResult(allowed=True, remaining=None, resets_at=None)
            resets_at = period_bounds(quota.period, at)[1]
            remaining = self._remaining_unclamped(plan_id, key_id, quota, day)
            if remaining <= 0:
                return ConsumeResult(allowed=False, remaining=0, resets_at=resets_at)
            self.record(plan_id, key_id, day, at=at)
            return ConsumeResult(allowed=True, remaining=remaining - 1, resets_at=resets_at)

    def record(self, plan_id: str, key_id: str, day: date, n: int = 1, at: datetime | None = None) -> None:
        """Add `n` requests on `day` without any quota check (seeding data, or traffic already admitted);
        `at` (default now) is when they were made, which decides when a lagging GetUsage reports them."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            per_day = self._daily.setdefault((plan_id, key_id), {})
            per_day[day] = per_day.get(day, 0) + n
            if _usage_lag() > 0:
                self._unreported.setdefault((plan_id, key_id), []).append((at or _now(), day, n))

    def used_on(self, plan_id: str, key_id: str, day: date) -> int:
        """Requests recorded for the key in the plan on one UTC day."""
        with self._lock:
            return self._daily.get((plan_id, key_id), {}).get(day, 0)

    def used_in_period(self, plan_id: str, key_id: str, at: datetime) -> int:
        """Requests from the start of the quota period containing `at` up to and including `at`'s UTC day."""
        with self._lock:
            quota = self._require_quota(plan_id)
            return self._used_in_period(plan_id, key_id, quota, at.astimezone(UTC).date())

    def remaining(self, plan_id: str, key_id: str, at: datetime) -> int | None:
        """What GetUsage reports as remaining for `at`'s day; None when the plan has no quota."""
        with self._lock:
            quota = self._quota(plan_id)
            if quota is None:
                return None
            return max(self._remaining_unclamped(plan_id, key_id, quota, at.astimezone(UTC).date()), 0)

    def set_remaining(self, plan_id: str, key_id: str, value: int, at: datetime) -> None:
        """UpdateUsage: make the remaining quota of the current period `value` (a grant or a removal)."""
        if value < 0:
            raise ValueError("remaining must not be negative")
        day = at.astimezone(UTC).date()
        with self._lock:
            quota = self._require_quota(plan_id)
            delta = value - self._remaining_unclamped(plan_id, key_id, quota, day)
            self._grants.setdefault((plan_id, key_id), []).append((day, delta))

    def daily_usage(
        self, plan_id: str, key_ids: list[str], start: date, end: date, *, lagging: bool = False
    ) -> dict[str, list[list[int]]]:
        """GetUsage's `values`: per key, one [used, remaining] pair per day from `start` to `end` inclusive;
        `lagging`: as GetUsage reports them, without the requests made within the usage lag."""
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        with self._lock:
            quota = self._quota(plan_id)
            values = {}
            for key_id in key_ids:
                hidden = self._unreported_by_day(plan_id, key_id) if lagging else {}
                values[key_id] = [
                    [
                        self.used_on(plan_id, key_id, day) - hidden.get(day, 0),
                        0 if quota is None else max(self._remaining_unclamped(plan_id, key_id, quota, day), 0),
                    ]
                    for day in days
                ]
                if quota is not None and hidden:
                    for index, day in enumerate(days):
                        # The requests not reported yet are not taken off the reported remaining either.
                        values[key_id][index][1] += self._hidden_in_period(hidden, quota, day)
            return values

    def _unreported_by_day(self, plan_id: str, key_id: str) -> dict[date, int]:
        cutoff = _now() - timedelta(seconds=_usage_lag())
        recent = [entry for entry in self._unreported.get((plan_id, key_id), []) if entry[0] > cutoff]
        self._unreported[(plan_id, key_id)] = recent  # what the lag has passed is reported from now on
        hidden: dict[date, int] = {}
        for _, day, n in recent:
            hidden[day] = hidden.get(day, 0) + n
        return hidden

    @staticmethod
    def _hidden_in_period(hidden: dict[date, int], quota: _Quota, day: date) -> int:
        start = _period_start(quota.period, day)
        return sum(n for d, n in hidden.items() if start <= d <= day)

    def set_plan_created_at(self, plan_id: str, created_at: datetime) -> None:
        """When the plan was created: the quota offset applies only in the period containing this instant."""
        with self._lock:
            self._plan_created_at[plan_id] = created_at.astimezone(UTC)

    def _remaining_unclamped(self, plan_id: str, key_id: str, quota: _Quota, day: date) -> int:
        start = _period_start(quota.period, day)
        created_at = self._plan_created_at.get(plan_id)
        # Without a known creation time (a plan made before install()) no period is the first one.
        first = created_at is not None and is_first_period(quota.period, created_at, _midnight(day))
        granted = sum(delta for made_on, delta in self._grants.get((plan_id, key_id), []) if start <= made_on <= day)
        used = self._used_in_period(plan_id, key_id, quota, day)
        return effective_limit(quota.limit, quota.offset, first) - used + granted

    def _used_in_period(self, plan_id: str, key_id: str, quota: _Quota, day: date) -> int:
        start = _period_start(quota.period, day)
        per_day = self._daily.get((plan_id, key_id), {})
        return sum(n for d, n in per_day.items() if start <= d <= day)

    def _quota(self, plan_id: str) -> _Quota | None:
        plan = self._backend.usage_plans.get(plan_id)
        if plan is None:
            raise UsagePlanKeyNotFound(f"usage plan {plan_id} does not exist")
        if not plan.quota or plan.quota.get("limit") is None:
            return None
        # moto keeps the raw JSON of CreateUsagePlan but the string value of an UpdateUsagePlan patch.
        return _Quota(
            limit=int(plan.quota["limit"]),
            offset=int(plan.quota.get("offset") or 0),
            period=parse_quota_period(str(plan.quota.get("period"))),
        )

    def _require_quota(self, plan_id: str) -> _Quota:
        quota = self._quota(plan_id)
        if quota is None:
            raise ValueError(f"usage plan {plan_id} has no quota")
        return quota

    def _require_member(self, plan_id: str, key_id: str) -> None:
        if plan_id not in self._backend.usage_plans:
            raise UsagePlanKeyNotFound(f"usage plan {plan_id} does not exist")
        if key_id not in self._backend.usage_plan_keys.get(plan_id, {}):
            raise UsagePlanKeyNotFound(f"API key {key_id} is not in usage plan {plan_id}")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _period_start(period: QuotaPeriod, day: date) -> date:
    return period_bounds(period, _midnight(day))[0].date()


# --- Management-API rate limits ------------------------------------------------------------------


@dataclass(frozen=True)
class _Rate:
    per_second: float
    burst: float


# "API Gateway quotas for creating, deploying and managing an API" (developerguide/limits.html).
# Only the operations this project calls are listed; any other shares only the account total.
_TOTAL_RATE: Final = _Rate(per_second=10, burst=40)
_OPERATION_RATES: Final = {
    "CreateApiKey": _Rate(per_second=5, burst=5),
    "DeleteApiKey": _Rate(per_second=5, burst=5),
    "UpdateUsagePlan": _Rate(per_second=1 / 20, burst=1),
}


class _ManagementRateLimiter:
    """The token buckets of one account and region."""

    def __init__(self, clock: MonotonicClock) -> None:
        self._lock = threading.Lock()
        self._total = TokenBucket(_TOTAL_RATE.per_second, _TOTAL_RATE.burst, clock)
        self._per_operation = {
            name: TokenBucket(rate.per_second, rate.burst, clock) for name, rate in _OPERATION_RATES.items()
        }

    def admit(self, operation: str) -> float:
        """Take a token for `operation` from every bucket it counts against; 0.0 if admitted, else the wait."""
        buckets = [self._total]
        if operation in self._per_operation:
            buckets.append(self._per_operation[operation])
        # Under one lock, so a call refused by one bucket takes nothing from the other.
        with self._lock:
            wait = max(bucket.seconds_until_available() for bucket in buckets)
            if wait > 0:
                return wait
            for bucket in buckets:
                bucket.try_take()
            return 0.0


@dataclass
class _Settings:
    rate_limits: bool | None = None  # None: follow RATE_LIMITS_ENV (on unless "0")
    monotonic: MonotonicClock = time.monotonic
    wall_clock: WallClock | None = None  # None: datetime.now(UTC)
    usage_lag_seconds: float | None = None  # None: follow USAGE_LAG_ENV (0 unless set)
    api_key_limit: int | None = None  # None: follow API_KEY_LIMIT_ENV (API_KEY_LIMIT unless set)
    generation: int = 0  # bumped with the monotonic clock, so buckets built on the old clock are dropped


_settings = _Settings()


def set_management_rate_limits(enabled: bool | None, *, clock: MonotonicClock | None = None) -> None:
    """Turn the management-API rate limits on or off (None: back to RATE_LIMITS_ENV); optionally swap the
    monotonic clock the buckets read, which also refills every bucket."""
    _settings.rate_limits = enabled
    if clock is not None:
        _settings.monotonic = clock
        _settings.generation += 1


def set_wall_clock(clock: WallClock | None) -> None:
    """The UTC "now" of UpdateUsage and of usage-plan creation times (None: the real time)."""
    _settings.wall_clock = clock


def set_usage_lag(seconds: float | None) -> None:
    """How far GetUsage lags behind the requests (None: back to USAGE_LAG_ENV, 0 when unset)."""
    _settings.usage_lag_seconds = seconds


def set_api_key_limit(limit: int | None) -> None:
    """How many API keys the account may hold (None: back to API_KEY_LIMIT_ENV, 10,000 when unset)."""
    _settings.api_key_limit = limit


def _api_key_limit() -> int:
    if _settings.api_key_limit is not None:
        return _settings.api_key_limit
    return int(os.environ.get(API_KEY_LIMIT_ENV) or API_KEY_LIMIT)


def _usage_lag() -> float:
    if _settings.usage_lag_seconds is not None:
        return _settings.usage_lag_seconds
    return float(os.environ.get(USAGE_LAG_ENV) or 0)


def _rate_limits_enabled() -> bool:
    if _settings.rate_limits is not None:
        return _settings.rate_limits
    return os.environ.get(RATE_LIMITS_ENV, "1") != "0"


def _now() -> datetime:
    return _settings.wall_clock() if _settings.wall_clock is not None else datetime.now(UTC)


# --- Per-backend state -----------------------------------------------------------------------------


class _BackendState:
    def __init__(self, backend: APIGatewayBackend) -> None:
        self.ledger = UsageLedger(backend)
        # Serialises changes to plan membership, so two concurrent CreateUsagePlanKey calls cannot both
        # pass the one-plan-per-stage check (moto itself holds no lock).
        self.membership_lock = threading.RLock()
        self._limiter: _ManagementRateLimiter | None = None
        self._limiter_generation = -1
        self._lock = threading.Lock()
        # Management requests received, by operation (botocore's retries each count), for tests and the stack.
        self.calls: Counter[str] = Counter()

    def count_call(self, action: str) -> None:
        with self._lock:
            self.calls[action] += 1

    def limiter(self) -> _ManagementRateLimiter:
        with self._lock:
            if self._limiter is None or self._limiter_generation != _settings.generation:
                self._limiter = _ManagementRateLimiter(_settings.monotonic)
                self._limiter_generation = _settings.generation
            return self._limiter


# Kept in the backend's own __dict__ because moto's reset() empties exactly that: a reset account
# starts with an empty ledger and full buckets, as a fresh AWS account would.
_STATE_ATTRIBUTE: Final = "_metered_ai_fidelity_state"
_state_lock = threading.Lock()


def _state(backend: APIGatewayBackend) -> _BackendState:
    state = backend.__dict__.get(_STATE_ATTRIBUTE)
    if state is None:
        with _state_lock:
            state = backend.__dict__.setdefault(_STATE_ATTRIBUTE, _BackendState(backend))
    assert isinstance(state, _BackendState)
    return state


def ledger(account_id: str = "123456789012", region: str = "us-east-1") -> UsageLedger:
    """The usage ledger of one account and region (cleared by moto's reset, like the rest of the backend)."""
    return _state(apigateway_backends[account_id][region]).ledger


def management_calls(account_id: str = "123456789012", region: str = "us-east-1") -> dict[str, int]:
    """The management requests the account received so far, by operation (each retry is one request)."""
    state = _state(apigateway_backends[account_id][region])
    with state._lock:
        return dict(state.calls)


# --- Errors as AWS returns them ----------------------------------------------------------------------


class _NotFound(NotFoundException):
    # moto's NotFoundException base class answers 400; AWS answers 404.
    code = 404


def _invalid_plan(plan_id: str) -> _NotFound:
    return _NotFound(f"Invalid Usage Plan ID specified: {plan_id}")


def _invalid_key(key_id: str) -> _NotFound:
    return _NotFound(f"Invalid API Key identifier specified: {key_id}")


class _ApiKeyCeiling(ApiGatewayException):
    # Code LimitExceededException, HTTP 429, no Retry-After: waiting does not free a key.
    code = 429

    def __init__(self) -> None:
        super().__init__("LimitExceededException", API_KEY_CEILING_MESSAGE)


def _too_many_requests(response: APIGatewayResponse, wait: float) -> TYPE_RESPONSE:
    # The shape botocore parses into ClientError code TooManyRequestsException with retryAfterSeconds,
    # which both its legacy and standard retry modes treat as throttling.
    headers = dict(response.response_headers)
    headers.update(
        {
            "Content-Type": "application/json",
            "X-Amzn-ErrorType": "TooManyRequestsException",
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Retry-After": str(max(1, math.ceil(wait))),
        }
    )
    return 429, headers, json.dumps({"message": "Too Many Requests"})


# --- Backend patches (shared by HTTP calls and moto's CloudFormation) --------------------------------

_ORIGINAL_CREATE_USAGE_PLAN: Final = APIGatewayBackend.create_usage_plan
_ORIGINAL_DELETE_USAGE_PLAN: Final = APIGatewayBackend.delete_usage_plan
_ORIGINAL_CREATE_USAGE_PLAN_KEY: Final = APIGatewayBackend.create_usage_plan_key
_ORIGINAL_DELETE_USAGE_PLAN_KEY: Final = APIGatewayBackend.delete_usage_plan_key
_ORIGINAL_DELETE_API_KEY: Final = APIGatewayBackend.delete_api_key
_ORIGINAL_CREATE_API_KEY: Final = APIGatewayBackend.create_api_key
_ORIGINAL_CALL_ACTION: Final = APIGatewayResponse.call_action


def _create_usage_plan(self: APIGatewayBackend, payload: Any) -> Any:
    plan = _ORIGINAL_CREATE_USAGE_PLAN(self, payload)
    _state(self).ledger.set_plan_created_at(plan.id, _now())
    return plan


def _delete_usage_plan(self: APIGatewayBackend, usage_plan_id: str) -> None:
    # moto raises KeyError for an unknown plan and keeps the deleted plan's key memberships.
    with _state(self).membership_lock:
        if usage_plan_id not in self.usage_plans:
            raise _invalid_plan(usage_plan_id)
        _ORIGINAL_DELETE_USAGE_PLAN(self, usage_plan_id)
        self.usage_plan_keys.pop(usage_plan_id, None)


def _create_usage_plan_key(self: APIGatewayBackend, usage_plan_id: str, payload: dict[str, Any]) -> Any:
    # moto adds any existing key to any plan id, even an unknown one, any number of times.
    with _state(self).membership_lock:
        plan = self.usage_plans.get(usage_plan_id)
        if plan is None:
            raise _invalid_plan(usage_plan_id)
        key_id = payload.get("keyId")
        if not key_id or key_id not in self.keys:
            raise _invalid_key(str(key_id))
        if payload.get("keyType") != "API_KEY":
            raise BadRequestException("Invalid key type specified: only API_KEY is supported")
        if key_id in self.usage_plan_keys.get(usage_plan_id, {}):
            raise ConflictException(f"Usage Plan {usage_plan_id} already contains API Key {key_id}")
        stages = _stages(plan)
        # list(): plans created concurrently (outside this lock) must not break the iteration.
        for other_id, other in list(self.usage_plans.items()):
            if other_id == usage_plan_id or key_id not in self.usage_plan_keys.get(other_id, {}):
                continue
            shared = sorted(stages & _stages(other))
            if shared:
                api_id, stage_name = shared[0]
                raise ConflictException(
                    f"Usage Plan {usage_plan_id} cannot be added because API Key {key_id} cannot reference "
                    f"multiple Usage Plans with the same API Stage: {api_id}:{stage_name}"
                )
        return _ORIGINAL_CREATE_USAGE_PLAN_KEY(self, usage_plan_id, payload)


def _stages(plan: UsagePlan) -> set[tuple[str, str]]:
    return {(stage["apiId"], stage["stage"]) for stage in plan.api_stages}


def _delete_usage_plan_key(self: APIGatewayBackend, usage_plan_id: str, key_id: str) -> None:
    # moto raises KeyError (a 500) for either unknown id.
    with _state(self).membership_lock:
        if usage_plan_id not in self.usage_plans:
            raise _invalid_plan(usage_plan_id)
        if key_id not in self.usage_plan_keys.get(usage_plan_id, {}):
            raise _invalid_key(key_id)
        _ORIGINAL_DELETE_USAGE_PLAN_KEY(self, usage_plan_id, key_id)


def _create_api_key(self: APIGatewayBackend, payload: dict[str, Any]) -> Any:
    # moto creates any number of keys; AWS stops at the account's ceiling (counted under the lock, so a burst
    # of creations cannot pass it together).
    with _state(self).membership_lock:
        if len(self.keys) >= _api_key_limit():
            raise _ApiKeyCeiling()
        return _ORIGINAL_CREATE_API_KEY(self, payload)


def _delete_api_key(self: APIGatewayBackend, api_key_id: str) -> None:
    # moto leaves the deleted key in its usage plans, where GetUsagePlanKeys would still list it.
    with _state(self).membership_lock:
        _ORIGINAL_DELETE_API_KEY(self, api_key_id)
        for plan_keys in list(self.usage_plan_keys.values()):
            plan_keys.pop(api_key_id, None)


# --- Response patches: throttling and the two operations moto lacks ---------------------------------


def _call_action(self: APIGatewayResponse) -> TYPE_RESPONSE:
    # Every API Gateway management request passes here, whether mock_aws or the server received it.
    _state(self.backend).count_call(self._get_action() or "")
    if _rate_limits_enabled():
        wait = _state(self.backend).limiter().admit(self._get_action() or "")
        if wait > 0:
            return _too_many_requests(self, wait)
    return _ORIGINAL_CALL_ACTION(self)


def _import_api_keys(self: APIGatewayResponse) -> TYPE_RESPONSE:
    """ImportApiKeys (moto has none), as AWS documents it: POST /apikeys?mode=import&format=csv, the body an API
    key file (`Name` and `Key` required; `Description`, `Enabled`, `UsagePlanIds` optional; header names in
    any case and order; unknown columns ignored; a Key of 20 to 128 characters, a Name of at most 1,024). A
    value that exists overwrites that key. Answers 201 `{"ids", "warnings"}`; a row that cannot be imported is
    a warning and, with failonwarnings=true, fails the whole import (BadRequestException, nothing changed).
    New keys count against the account's key ceiling."""
    if (_query(self, "format") or "").lower() != "csv":
        raise BadRequestException("Invalid format: only csv is supported")
    fail_on_warnings = (_query(self, "failonwarnings") or "false").lower() == "true"
    raw = self.body if isinstance(self.body, str) else bytes(self.body or b"").decode("utf-8", errors="replace")
    wanted, warnings = _key_file_rows(raw, self.backend)
    if warnings and fail_on_warnings:
        raise BadRequestException("; ".join(warnings))
    ids = _import_rows(self.backend, wanted)
    return 201, {"Content-Type": "application/json"}, json.dumps({"ids": ids, "warnings": warnings})


def _key_file_rows(raw: str, backend: APIGatewayBackend) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of an API key file that can be imported, and a warning for each other row."""
    rows = list(csv.reader(io.StringIO(raw.lstrip("\ufeff"))))
    header = [column.strip().lower() for column in rows[0]] if rows else []
    if "name" not in header or "key" not in header:
        raise BadRequestException("The API key file must have the Name and Key columns")
    wanted: list[dict[str, Any]] = []
    warnings: list[str] = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        row = dict(zip(header, cells, strict=False))
        value, name = row.get("key", ""), row.get("name", "")
        plans = [plan.strip(" '\"") for plan in row.get("usageplanids", "").split(",") if plan.strip(" '\"")]
        unknown = [plan for plan in plans if plan not in backend.usage_plans]
        if not 20 <= len(value) <= 128:
            warnings.append(f"Line {number}: API Key value must be between 20 and 128 characters")
        elif not name or len(name) > 1024:
            warnings.append(f"Line {number}: API Key name must be between 1 and 1024 characters")
        elif unknown:
            warnings.append(f"Line {number}: Invalid Usage Plan ID specified: {unknown[0]}")
        else:
            enabled = row.get("enabled", "").strip().lower() != "false"
            description = row.get("description", "")
            wanted.append(
                {"value": value, "name": name, "description": description, "enabled": enabled, "plans": plans}
            )
    return wanted, warnings


def _import_rows(backend: APIGatewayBackend, wanted: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    with _state(backend).membership_lock:
        existing = {key.value: key for key in backend.keys.values()}
        new = sum(1 for item in wanted if item["value"] not in existing)
        if new and len(backend.keys) + new > _api_key_limit():
            raise _ApiKeyCeiling()
        for item in wanted:
            key = existing.get(item["value"])
            if key is None:
                payload = {name: item[name] for name in ("value", "name", "description", "enabled")}
                key = _ORIGINAL_CREATE_API_KEY(backend, payload)
            else:  # the same value imported again: the most recent version overwrites the previous one
                key.name, key.description, key.enabled = item["name"], item["description"], item["enabled"]
            for plan_id in item["plans"]:
                if key.id not in backend.usage_plan_keys.get(plan_id, {}):
                    backend.create_usage_plan_key(plan_id, {"keyId": key.id, "keyType": "API_KEY"})
            ids.append(key.id)
    return ids


def _get_usage(self: APIGatewayResponse) -> str:
    plan_id = _path_segment(self.path, 2)
    backend = self.backend
    if plan_id not in backend.usage_plans:
        raise _invalid_plan(plan_id)
    start = _parse_date(_query(self, "startDate"), "startDate")
    end = _parse_date(_query(self, "endDate"), "endDate")
    if end < start:
        raise BadRequestException("The end date must not be before the start date")
    limit = _parse_limit(_query(self, "limit"))
    key_ids = sorted(backend.usage_plan_keys.get(plan_id, {}))
    key_id = _query(self, "keyId")
    if key_id is not None:
        if key_id not in key_ids:
            raise _invalid_key(key_id)
        key_ids = [key_id]
    first = _decode_position(_query(self, "position"), key_ids)
    page = key_ids[first : first + limit]
    body: dict[str, Any] = {
        "usagePlanId": plan_id,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "values": _state(backend).ledger.daily_usage(plan_id, page, start, end, lagging=True),
    }
    if first + limit < len(key_ids):
        body["position"] = _encode_position(key_ids[first + limit])
    return json.dumps(body)


def _update_usage(self: APIGatewayResponse) -> str:
    plan_id, key_id = _path_segment(self.path, 2), _path_segment(self.path, 4)
    backend = self.backend
    plan = backend.usage_plans.get(plan_id)
    if plan is None:
        raise _invalid_plan(plan_id)
    if key_id not in backend.usage_plan_keys.get(plan_id, {}):
        raise _invalid_key(key_id)
    if not plan.quota or plan.quota.get("limit") is None:
        raise BadRequestException(f"Usage Plan {plan_id} has no quota to update")
    value = _remaining_from_patch(json.loads(self.body or "{}").get("patchOperations") or [])
    now = _now()
    usage_ledger = _state(backend).ledger
    usage_ledger.set_remaining(plan_id, key_id, value, now)
    quota_period = parse_quota_period(str(plan.quota.get("period")))
    start, today = period_bounds(quota_period, now)[0].date(), now.astimezone(UTC).date()
    return json.dumps(
        {
            "usagePlanId": plan_id,
            "startDate": start.isoformat(),
            "endDate": today.isoformat(),
            "values": usage_ledger.daily_usage(plan_id, [key_id], start, today, lagging=True),
        }
    )


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(value: str | None, name: str) -> date:
    if value is None or not _DATE.fullmatch(value):
        raise BadRequestException(f"Invalid {name}: expected a date formatted as yyyy-MM-dd")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequestException(f"Invalid {name}: {value} is not a calendar date") from None


def _parse_limit(value: str | None) -> int:
    if value is None:
        return GET_USAGE_DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= GET_USAGE_MAX_LIMIT:
        raise BadRequestException(f"Invalid limit: must be between 1 and {GET_USAGE_MAX_LIMIT}")
    return int(value)


def _encode_position(next_key_id: str) -> str:
    return base64.urlsafe_b64encode(next_key_id.encode()).decode()


def _decode_position(position: str | None, key_ids: list[str]) -> int:
    if position is None:
        return 0
    try:
        next_key_id = base64.urlsafe_b64decode(position.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequestException("Invalid position") from None
    # A key deleted between two pages must not restart or stall the listing.
    return bisect_left(key_ids, next_key_id)


def _remaining_from_patch(operations: list[dict[str, Any]]) -> int:
    if len(operations) != 1:
        raise BadRequestException("Exactly one patch operation is supported: replace /remaining")
    operation = operations[0]
    value = str(operation.get("value", ""))
    if operation.get("op") != "replace" or operation.get("path") != "/remaining":
        raise BadRequestException("Invalid patch operation: only replace /remaining is supported")
    if not value.isdigit():
        raise BadRequestException(f"Invalid remaining value: {value!r}")
    return int(value)


def _query(response: APIGatewayResponse, name: str) -> str | None:
    values = response.querystring.get(name)
    return str(values[0]) if values else None


def _path_segment(path: str, index: int) -> str:
    # /usageplans/{usageplanId}/usage and /usageplans/{usageplanId}/keys/{keyId}/usage
    return unquote(path.split("/")[index])


# --- Installation -------------------------------------------------------------------------------------

_USAGE_URL_PATHS: Final = {
    "{0}/usageplans/(?P<usage_plan_id>[^/]+)/usage$": APIGatewayResponse.dispatch,
    "{0}/usageplans/(?P<usage_plan_id>[^/]+)/keys/(?P<api_key_id>[^/]+)/usage$": APIGatewayResponse.dispatch,
}
_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Patch moto once (later calls do nothing). Call before a ThreadedMotoServer serves its first
    API Gateway request: the server builds its routes from moto's URL table on that request."""
    global _installed  # noqa: PLW0603 - installing is process-wide by nature
    if not moto.__version__.startswith("5."):
        raise RuntimeError(
            f"offline.apigateway_fidelity patches moto 5 internals (APIGatewayBackend, APIGatewayResponse, "
            f"moto.apigateway.urls); moto {moto.__version__} is installed. Re-check every patch before "
            "changing this guard."
        )
    with _install_lock:
        if _installed:
            return
        # moto resolves routes from this dict on every request, in both modes.
        apigateway_urls.url_paths.update(_USAGE_URL_PATHS)
        backend_patches: dict[str, Callable[..., Any]] = {
            "create_usage_plan": _create_usage_plan,
            "delete_usage_plan": _delete_usage_plan,
            "create_usage_plan_key": _create_usage_plan_key,
            "delete_usage_plan_key": _delete_usage_plan_key,
            "delete_api_key": _delete_api_key,
            "create_api_key": _create_api_key,
        }
        for name, function in backend_patches.items():
            setattr(APIGatewayBackend, name, function)
        # moto finds an operation's handler by its snake_case name on the response class.
        setattr(APIGatewayResponse, "get_usage", _get_usage)  # noqa: B010
        setattr(APIGatewayResponse, "import_api_keys", _import_api_keys)  # noqa: B010
        setattr(APIGatewayResponse, "update_usage", _update_usage)  # noqa: B010
        setattr(APIGatewayResponse, "call_action", _call_action)  # noqa: B010
        _installed = True
