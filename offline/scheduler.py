"""Runs each function's Schedule / ScheduleV2 events on their expressions, in one background thread.

Expressions are EventBridge's: `rate(N minute|minutes|hour|hours|day|days)` and the six-field
`cron(minutes hours day-of-month month day-of-week year)` in UTC, with `*`, `?`, lists, ranges, steps and
names (JAN, MON); `L`, `W` and `#` are refused at start rather than misread. A rate schedule first fires
one period after the stack starts, as a new EventBridge rule does.
"""

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from offline.functions import FunctionSpec
from offline.template import ACCOUNT_ID, TemplateError

_RATE = re.compile(r"^rate\((?P<value>\d+)\s+(?P<unit>minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((?P<fields>[^)]*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    name: n
    for n, name in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)
}
# EventBridge numbers days of the week 1-7 from Sunday.
_WEEKDAYS = {name: n for n, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


class ScheduleError(TemplateError):
    """A schedule expression the offline scheduler cannot run."""


@dataclass(frozen=True)
class Rate:
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: "?" (the day of the week decides)
    months: frozenset[int]
    weekdays: frozenset[int] | None  # 1 = Sunday; None: "?"
    years: frozenset[int] | None

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` that matches, in UTC."""
        candidate = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=366 * 5)
        while candidate < limit:
            if not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        raise ScheduleError("the cron expression never fires in the next five years")

    def _day_matches(self, moment: datetime) -> bool:
        weekday = moment.isoweekday() % 7 + 1  # Monday=1..Sunday=7 -> Sunday=1..Saturday=7
        return (
            moment.month in self.months
            and (self.years is None or moment.year in self.years)
            and (self.days is None or moment.day in self.days)
            and (self.weekdays is None or weekday in self.weekdays)
        )


Expression = Rate | Cron


def parse_expression(text: str) -> Expression:
    """Parse an EventBridge schedule expression (`at(...)` one-time schedules are not supported)."""
    text = text.strip()
    if rate := _RATE.match(text):
        value, unit = int(rate["value"]), rate["unit"].rstrip("s")
        if value < 1:
            raise ScheduleError(f"{text}: the rate must be at least 1")
        if (value == 1) != (rate["unit"] == unit):
            raise ScheduleError(f"{text}: EventBridge wants the singular unit for 1 and the plural otherwise")
        return Rate(value * _UNIT_SECONDS[unit])
    if cron := _CRON.match(text):
        return _parse_cron(text, cron["fields"].split())
    raise ScheduleError(f"{text!r} is not a rate(...) or cron(...) expression")


def _parse_cron(text: str, fields: list[str]) -> Cron:
    if len(fields) != 6:
        raise ScheduleError(f"{text}: cron takes six fields (minutes hours day-of-month month day-of-week year)")
    minutes, hours, days, months, weekdays, years = fields
    if (days == "?") == (weekdays == "?"):
        raise ScheduleError(f"{text}: exactly one of day-of-month and day-of-week must be '?'")
    return Cron(
        minutes=_field(minutes, 0, 59, {}, text),
        hours=_field(hours, 0, 23, {}, text),
        days=None if days == "?" else _field(days, 1, 31, {}, text),
        months=_field(months, 1, 12, _MONTHS, text),
        weekdays=None if weekdays == "?" else _field(weekdays, 1, 7, _WEEKDAYS, text),
        years=None if years == "*" else _field(years, 1970, 2199, {}, text),
    )


def _field(spec: str, low: int, high: int, names: dict[str, int], text: str) -> frozenset[int]:
    if any(mark in spec for mark in ("L", "W", "#")) and not any(name in spec.upper() for name in names):
        raise ScheduleError(f"{text}: L, W and # are not supported offline")
    values: set[int] = set()
    for part in spec.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, names, text), _value(last, names, text)
        else:
            start = _value(base, names, text)
            end = high if step_text else start
        if not low <= start <= end <= high or step < 1:
            raise ScheduleError(f"{text}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(token: str, names: dict[str, int], text: str) -> int:
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ScheduleError(f"{text}: {token!r} is not a number")
    return int(token)


@dataclass(frozen=True)
class ScheduledInvocation:
    """One schedule event of one function."""

    function_id: str
    event_name: str
    expression_text: str
    expression: Expression
    enabled: bool
    payload: Callable[[datetime], Any]


def scheduled_invocations(specs: dict[str, FunctionSpec], stack_name: str) -> list[ScheduledInvocation]:
    """Every Schedule and ScheduleV2 event of the functions, parsed (an unsupported expression fails here)."""
    found = []
    for spec in specs.values():
        for event_name, event in spec.events.items():
            kind = event.get("Type")
            if kind not in ("Schedule", "ScheduleV2"):
                continue
            props = event.get("Properties") or {}
            text = str(props.get("Schedule") or props.get("ScheduleExpression") or "")
            state = str(props.get("State") or "ENABLED").upper()
            enabled = state == "ENABLED" and str(props.get("Enabled", True)).lower() != "false"
            found.append(
                ScheduledInvocation(
                    function_id=spec.logical_id,
                    event_name=event_name,
                    expression_text=text,
                    expression=parse_expression(text),
                    enabled=enabled,
                    payload=_payload(kind, props, spec, f"{stack_name}-{spec.logical_id}-{event_name}"),
                )
            )
    return found


def _payload(kind: str, props: dict[str, Any], spec: FunctionSpec, rule_name: str) -> Callable[[datetime], Any]:
    if props.get("Input") is not None and kind == "ScheduleV2":
        return _with_context_attributes(str(props["Input"]), spec, rule_name)
    if props.get("Input") is not None:
        constant = json.loads(str(props["Input"]))
        return lambda _: constant
    if kind == "ScheduleV2":
        # EventBridge Scheduler passes the target's Input, and an empty object without one.
        return lambda _: {}

    def scheduled_event(at: datetime) -> dict[str, Any]:
        # What an EventBridge rule sends a Lambda target without Input.
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": spec.region,
            "resources": [f"arn:aws:events:{spec.region}:{ACCOUNT_ID}:rule/{rule_name}"],
            "detail": {},
        }

    return scheduled_event


def _with_context_attributes(text: str, spec: FunctionSpec, schedule_name: str) -> Callable[[datetime], Any]:
    """EventBridge Scheduler replaces its context attributes in the Input on every invocation."""
    json.loads(text)  # an Input that is not JSON fails the start, as it would fail the deploy

    arn = f"arn:aws:scheduler:{spec.region}:{ACCOUNT_ID}:schedule/default/{schedule_name}"

    def payload(at: datetime) -> Any:
        values = {
            "<aws.scheduler.schedule-arn>": arn,
            "<aws.scheduler.scheduled-time>": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "<aws.scheduler.execution-id>": uuid.uuid4().hex[:16],
            "<aws.scheduler.attempt-number>": "1",
        }
        replaced = text
        for name, value in values.items():
            replaced = replaced.replace(name, value)
        return json.loads(replaced)

    return payload


class Scheduler:
    """Fires each enabled schedule at its next time; `run` is what a timer calls (the function's invoke)."""

    def __init__(
        self,
        schedules: list[ScheduledInvocation],
        run: Callable[[ScheduledInvocation, Any], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._schedules = [schedule for schedule in schedules if schedule.enabled]
        self._run = run
        self._now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        start = now()
        self.next_runs = {id(schedule): schedule.expression.next_after(start) for schedule in self._schedules}

    def start(self) -> None:
        if not self._schedules:
            return
        self._thread = threading.Thread(target=self._loop, name="offline-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_due(self) -> int:
        """Run every schedule whose time has come, in order; return how many ran."""
        ran = 0
        now = self._now()
        for schedule in self._schedules:
            due = self.next_runs[id(schedule)]
            if due <= now:
                self.next_runs[id(schedule)] = schedule.expression.next_after(now)
                self._run(schedule, schedule.payload(due))
                ran += 1
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            wait = min(self.next_runs.values()) - self._now()
            self._stop.wait(min(max(wait.total_seconds(), 0.05), 60))
