"""The scheduled usage export (EventBridge Scheduler, daily shortly after midnight UTC, invoked asynchronously):
every quota period that closed the day before, as CSV and JSON, to UsageExportBucket.

The schedule's input carries its scheduled time (`<aws.scheduler.scheduled-time>`): a retried or late delivery
exports the same periods as the original, and writes the same bytes (core.admin.usage_export.ScheduledExport).
`{"period": "2026-03"}` (or a day) exports that period on demand, e.g. to fill a gap after an outage. A failure
raises: Lambda retries the event, then sends it to the DLQ.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, field_validator

from core.admin.service import scheduled_export
from core.observability import logger, tracer


class ExportEvent(BaseModel):
    """The schedule's input (`{"scheduled_time", "execution_id", "attempt"}`), an EventBridge rule's event
    (`time`), or `{"period": ...}` for one period on demand; `{}` exports what closed before now."""

    model_config = ConfigDict(extra="ignore")

    scheduled_time: datetime | None = None
    time: datetime | None = None
    period: str | None = None
    execution_id: str | None = None

    @field_validator("scheduled_time", "time", mode="before")
    @classmethod
    def _instant_or_none(cls, value: object) -> object:
        # An un-substituted placeholder (a test event, `sam local invoke`) means "now".
        if isinstance(value, str) and value.startswith("<"):
            return None
        return value

    @property
    def as_of(self) -> datetime:
        moment = self.scheduled_time or self.time or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("the scheduled time must carry a time zone (EventBridge sends UTC with a Z)")
        return moment


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    run = ExportEvent.model_validate(event or {})
    logger.append_keys(execution_id=run.execution_id)
    written = scheduled_export().run(run.as_of, run.period)
    return {
        "as_of": run.as_of.isoformat(),
        "objects": [{"key": item.key, "rows": item.rows, "sha256": item.sha256} for item in written],
    }
