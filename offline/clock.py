"""The offline account's wall clock: real time, which a test (or a curious user) may move to another instant
through the control endpoint (`POST /__offline/clock`), e.g. into the next quota period.

Everything in the emulated account that depends on the date reads it: the local gateway's quota periods and
usage days, GetUsage/UpdateUsage's "today", and the time a schedule sends its function
(`<aws.scheduler.scheduled-time>`). The functions themselves keep the real clock, as they would in Lambda;
what they evaluate "as of" comes from their event.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class OfflineClock:
    def __init__(self, real: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._real = real
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._real() + self._offset

    def move_to(self, moment: datetime) -> None:
        """From now on the clock reads `moment`, and runs on from there."""
        if moment.tzinfo is None:
            raise ValueError("the time needs a time zone, e.g. 2030-02-01T00:00:00Z")
        with self._lock:
            self._offset = moment.astimezone(UTC) - self._real()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)

    def control(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """The control endpoint's `clock` verb: `{"now": ISO 8601}`, `{"advance_seconds": n}`, `{"reset": true}`,
        or nothing (just read it)."""
        if payload is not None and not isinstance(payload, dict):
            return 400, {"message": 'send {"now": "<ISO 8601>"}, {"advance_seconds": <n>} or {"reset": true}'}
        payload = payload or {}
        try:
            if payload.get("reset"):
                self.reset()
            if "now" in payload:
                self.move_to(datetime.fromisoformat(str(payload["now"])))
            if "advance_seconds" in payload:
                self.advance(float(payload["advance_seconds"]))
        except (TypeError, ValueError) as exc:
            return 400, {"message": f"cannot set the clock: {exc}"}
        now = self.now()
        with self._lock:
            offset = self._offset.total_seconds()
        return 200, {"now": now.isoformat(), "offset_seconds": offset}
